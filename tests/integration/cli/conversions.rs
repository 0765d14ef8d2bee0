//! End to end: the unmodified `glance image-create-via-import --import-method web-download`
//! against `glint serve` with `[import] decompress` and `conversion_output_format`, fetching
//! from a local HTTP server images in every format Glint converts (qcow2 plain and with zlib
//! clusters, vmdk monolithicSparse and streamOptimized, vhd, vhdx, vdi), each compression
//! (gzip, xz, zstd, bzip2, zip) among them, converted to raw on one server and to qcow2 on
//! another; a decompression bomb; and a wrong expected checksum, sent through the API since
//! glanceclient cannot send `validation_data`. Every image is imported at once, one client
//! process each, to keep the run short.

use super::*;

/// The base image's size: whole sectors, of no cluster, grain or block size.
const VIRTUAL_SIZE: &str = "5243392";
/// `image_size_cap`: the bomb decompresses past it.
const CAP: u64 = 16 << 20;

/// (name, `qemu-img convert` arguments from the base qcow2, disk_format).
const FORMATS: [(&str, &[&str], &str); 7] = [
    ("qcow2", &["-O", "qcow2"], "qcow2"),
    ("qcow2-zlib", &["-O", "qcow2", "-c"], "qcow2"),
    ("vmdk-sparse", &["-O", "vmdk", "-o", "subformat=monolithicSparse"], "vmdk"),
    ("vmdk-stream", &["-O", "vmdk", "-o", "subformat=streamOptimized"], "vmdk"),
    ("vhd", &["-O", "vpc", "-o", "subformat=dynamic"], "vhd"),
    ("vhdx", &["-O", "vhdx"], "vhdx"),
    ("vdi", &["-O", "vdi"], "vdi"),
];

/// (file extension, compressor and its arguments, stdin to stdout); `None` leaves the image as
/// it is.
const COMPRESSIONS: [Option<(&str, &str, &[&str])>; 6] = [
    None,
    Some(("gz", "gzip", &["-c"])),
    Some(("xz", "xz", &["-c", "-T1"])),
    Some(("zst", "zstd", &["-c", "-q"])),
    Some(("bz2", "bzip2", &["-c"])),
    // `zip - -`: the one member streamed, its sizes in a data descriptor after it.
    Some(("zip", "zip", &["-q", "-", "-"])),
];

fn qemu(dir: &Path, args: &[&str]) {
    let out = Command::new("qemu-img").current_dir(dir).args(args).output().expect("qemu-img");
    assert!(out.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `base.qcow2` in `dir`: patterns across clusters and grains, a zeroed area, the last bytes
/// written. Every format is converted from it, and each converted image's raw disk (by
/// qemu-img) is the reference for it, since vpc rounds the size to its disk geometry.
fn base(dir: &Path) {
    qemu(dir, &["create", "-q", "-f", "qcow2", "base.qcow2", VIRTUAL_SIZE]);
    let writes = [
        "write -P 0x11 0 1",
        "write -P 0x22 777 300000",
        "write -P 0x33 2097152 1048576",
        "write -z 2359296 65536",
        "write -P 0x44 5242392 1000",
    ];
    let mut command = Command::new("qemu-io");
    command.current_dir(dir).args(["-f", "qcow2"]);
    for write in writes {
        command.args(["-c", write]);
    }
    assert!(command.arg("base.qcow2").output().expect("qemu-io").status.success());
}

/// `data` through `tool args` (stdin to stdout).
fn piped(tool: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data).expect("write"));
    let out = child.wait_with_output().expect("output");
    writer.join().expect("writer");
    assert!(out.status.success(), "{tool} {args:?}");
    out.stdout
}

fn md5_of(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("digest").to_owned()
}

/// An import to make: the source on the web server, what the image is declared as, and the
/// image qemu-img reads it as (`None` for the bomb).
struct Case {
    label: String,
    url: String,
    disk_format: &'static str,
    image: Option<(PathBuf, &'static str)>,
}

/// Serves every format, the `shift`-th compression first, so that the two servers see each
/// format under different compressions and every compression at least once each.
fn serve_all(dir: &Path, web: &WebServer, shift: usize) -> Vec<Case> {
    FORMATS
        .iter()
        .enumerate()
        .map(|(index, &(name, args, disk_format))| {
            let file = format!("{name}.img");
            if !dir.join(&file).exists() {
                let mut all = vec!["convert", "-q", "-f", "qcow2"];
                all.extend_from_slice(args);
                all.extend(["base.qcow2", &file]);
                qemu(dir, &all);
                qemu(dir, &["convert", "-q", "-O", "raw", &file, &format!("{name}.raw")]);
            }
            let image = std::fs::read(dir.join(&file)).expect("read the image");
            let (path, body) = match COMPRESSIONS[(index + shift) % COMPRESSIONS.len()] {
                None => (format!("/{shift}/{file}"), image),
                Some((extension, tool, args)) => (format!("/{shift}/{file}.{extension}"), piped(tool, args, &image)),
            };
            let qemu_format = args[1];
            let url = web.route(&path, Reply::Bytes(body));
            Case { label: path, url, disk_format, image: Some((dir.join(&file), qemu_format)) }
        })
        .collect()
}

/// 64 MiB of zeros, xz-compressed: four times the size cap once decompressed.
fn bomb(web: &WebServer) -> Case {
    let url = web.route("/bomb.raw.xz", Reply::Bytes(piped("xz", &["-0", "-T1", "-c"], &vec![0u8; 64 << 20])));
    Case { label: "bomb".to_owned(), url, disk_format: "raw", image: None }
}

/// The clients against a server that decompresses, converts to `output` and may fetch from
/// `web`.
fn converting_clients(web: &WebServer, output: &str) -> Option<Clients> {
    Clients::start_with(&[
        ("GLINT__IMPORT__FILTERING__ALLOW_PRIVATE_ADDRESSES".to_owned(), "true".to_owned()),
        ("GLINT__IMPORT__FILTERING__ALLOWED_PORTS".to_owned(), format!("[{}]", web.port())),
        ("GLINT__IMPORT__DECOMPRESS".to_owned(), "true".to_owned()),
        ("GLINT__IMPORT__CONVERSION_OUTPUT_FORMAT".to_owned(), output.to_owned()),
        ("GLINT__IMAGES__IMAGE_SIZE_CAP".to_owned(), CAP.to_string()),
    ])
}

/// `glance image-create-via-import` of every case at once; the image ids, in order.
fn import_all(c: &Clients, cases: &[Case]) -> Vec<String> {
    std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .map(|case| {
                scope.spawn(move || {
                    let args = [
                        "image-create-via-import",
                        "--name",
                        case.label.as_str(),
                        "--disk-format",
                        case.disk_format,
                        "--container-format",
                        "bare",
                        "--import-method",
                        "web-download",
                        "--uri",
                        case.url.as_str(),
                    ];
                    prop(&properties(&c.glance(&args).success().stdout), "id").to_owned()
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().expect("client thread")).collect()
    })
}

/// A web-download of `url` into a new raw image through the API, with `validation_data`
/// expecting `sha256`; the image id.
fn import_expecting(runtime: &tokio::runtime::Runtime, c: &Clients, url: &str, sha256: &str) -> String {
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let created: Value = client
            .post(format!("{}/v2/images", c.server.url()))
            .json(&serde_json::json!({"name": "checked", "disk_format": "raw", "container_format": "bare"}))
            .send()
            .await
            .expect("POST /v2/images")
            .json()
            .await
            .expect("JSON");
        let id = text(&created, "id");
        let method = serde_json::json!({"method": {"name": "web-download", "uri": url,
            "validation_data": {"os_hash_algo": "sha256", "os_hash_value": sha256}}});
        let response =
            client.post(format!("{}/v2/images/{id}/import", c.server.url())).json(&method).send().await.expect("POST");
        assert_eq!(response.status(), 202);
        id
    })
}

/// The image once its import has ended (active, or queued again after a failure), and the
/// import task, read through the API.
fn settled(runtime: &tokio::runtime::Runtime, c: &Clients, id: &str) -> (Value, Value) {
    let get = |path: String| -> Value {
        runtime.block_on(async {
            reqwest::get(format!("{}{path}", c.server.url())).await.expect("GET").json().await.expect("JSON")
        })
    };
    let deadline = Instant::now() + IMPORT_DEADLINE;
    loop {
        let image = get(format!("/v2/images/{id}"));
        let tasks = get(format!("/v2/images/{id}/tasks"));
        let task = tasks["tasks"].get(0).cloned().unwrap_or(Value::Null);
        if matches!(task["status"].as_str(), Some("success" | "failure"))
            && matches!(image["status"].as_str(), Some("active" | "queued"))
        {
            return (image, task);
        }
        assert!(Instant::now() < deadline, "{id} did not settle: {image:#} {task:#}\n{}", c.server.output());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The import of `id` failed with a message containing `needle`, and left the image queued
/// and nothing in the store or the staging area.
fn assert_failed_cleanly(runtime: &tokio::runtime::Runtime, c: &Clients, id: &str, needle: &str) {
    let (image, task) = settled(runtime, c, id);
    assert_eq!(task["status"], "failure", "{task:#}");
    let message = task["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{message}");
    assert_eq!(image["status"], "queued", "{image:#}");
    assert!(image.get("os_glance_import_task").is_none(), "{image:#}");
    assert!(!c.server.dir().join("data/images").join(id).exists(), "the failed import left data");
    let staged: Vec<_> = std::fs::read_dir(c.server.dir().join("data/staging"))
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.file_name()).collect())
        .unwrap_or_default();
    assert!(!staged.iter().any(|name| name.to_string_lossy().starts_with(id)), "staging holds {staged:?}");
}

#[test]
fn glance_web_download_imports_convert_every_format_and_compression_to_raw_and_qcow2() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let web = runtime.block_on(WebServer::start());
    let Some(to_raw) = converting_clients(&web, "raw") else { return };
    let Some(to_qcow2) = converting_clients(&web, "qcow2") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    base(dir.path());
    let mut raw_cases = serve_all(dir.path(), &web, 0);
    raw_cases.push(bomb(&web));
    let qcow2_cases = serve_all(dir.path(), &web, 3);
    let plain = web.route("/plain.raw", Reply::Bytes(std::fs::read(dir.path().join("qcow2.raw")).expect("read")));
    let mismatched = import_expecting(&runtime, &to_raw, &plain, &"0".repeat(64));
    let (raw_ids, qcow2_ids) = std::thread::scope(|scope| {
        let raw = scope.spawn(|| import_all(&to_raw, &raw_cases));
        let qcow2 = import_all(&to_qcow2, &qcow2_cases);
        (raw.join().expect("client threads"), qcow2)
    });

    for (case, id) in raw_cases.iter().zip(&raw_ids) {
        let Some((image, _)) = &case.image else {
            assert_failed_cleanly(&runtime, &to_raw, id, &format!("decompresses to more than {CAP} bytes"));
            continue;
        };
        let reference = md5_of(&image.with_extension("raw"));
        let (shown, task) = settled(&runtime, &to_raw, id);
        assert_eq!(task["status"], "success", "{}: {task:#}\n{}", case.label, to_raw.server.output());
        assert_eq!((shown["disk_format"].as_str(), shown["status"].as_str()), (Some("raw"), Some("active")));
        assert_eq!(shown["checksum"].as_str(), Some(reference.as_str()), "{}", case.label);
        assert_eq!(shown["virtual_size"].as_u64(), shown["size"].as_u64(), "{}", case.label);
        assert_eq!(md5_of(&to_raw.server.dir().join("data/images").join(id)), reference, "{}", case.label);
    }
    for (case, id) in qcow2_cases.iter().zip(&qcow2_ids) {
        let (shown, task) = settled(&runtime, &to_qcow2, id);
        assert_eq!(task["status"], "success", "{}: {task:#}\n{}", case.label, to_qcow2.server.output());
        assert_eq!((shown["disk_format"].as_str(), shown["status"].as_str()), (Some("qcow2"), Some("active")));
        let stored = to_qcow2.server.dir().join("data/images").join(id);
        assert_eq!(shown["checksum"].as_str(), Some(md5_of(&stored).as_str()), "{}", case.label);
        let (image, qemu_format) = case.image.clone().expect("an image");
        let (image, stored) = (image.to_str().expect("UTF-8 path"), stored.to_str().expect("UTF-8 path"));
        qemu(dir.path(), &["check", "-q", "-f", "qcow2", stored]);
        qemu(dir.path(), &["compare", "-q", "-f", qemu_format, "-F", "qcow2", image, stored]);
    }
    assert_failed_cleanly(&runtime, &to_raw, &mismatched, "does not match the validation_data");
}
