//! Long work with a periodic side job beside it: upload heartbeats, lease renewal, progress.

use std::ops::ControlFlow;
use std::time::Duration;

/// Runs `work` while `tick` runs every `every` beside it (first after one period), and returns
/// what `work` returns. If `tick` breaks first, `work` is dropped (cancelled) and the break
/// value is returned instead; a ticker that never breaks (`B` = [`std::convert::Infallible`])
/// makes the result irrefutable.
///
/// `tick` is a closure returning a future rather than an async closure: the futures of async
/// closures cannot yet be proven `Send`, which the API's handlers and the worker's flows need.
pub async fn while_ticking<T, B, F>(
    work: impl Future<Output = T>,
    every: Duration,
    mut tick: impl FnMut() -> F,
) -> Result<T, B>
where
    F: Future<Output = ControlFlow<B>>,
{
    let ticker = async {
        loop {
            tokio::time::sleep(every).await;
            if let ControlFlow::Break(stop) = tick().await {
                return stop;
            }
        }
    };
    tokio::select! {
        out = work => Ok(out),
        stop = ticker => Err(stop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn ticks_while_the_work_runs_and_returns_its_output() {
        let third_tick = tokio::sync::Notify::new();
        let mut ticks = 0;
        let work = async {
            third_tick.notified().await;
            "done"
        };
        let out = while_ticking(work, EVERY, || {
            ticks += 1;
            if ticks == 3 {
                third_tick.notify_one();
            }
            std::future::ready(ControlFlow::<()>::Continue(()))
        })
        .await;
        assert_eq!(out, Ok("done"));
        assert!(ticks >= 3, "{ticks}");
    }

    #[tokio::test]
    async fn a_break_cancels_the_work() {
        let out =
            while_ticking(std::future::pending::<()>(), EVERY, || async { ControlFlow::Break("claim lost") }).await;
        assert_eq!(out, Err("claim lost"));
    }
}
