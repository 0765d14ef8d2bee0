//! oslo.policy's rule language: a check string parsed once, evaluated per request.

use std::collections::BTreeMap;

use crate::context::RequestContext;

/// A parsed check string (`role:admin or (role:member and project_id:%(project_id)s)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// `@`, or the empty string: everyone.
    Always,
    /// `!`: no one.
    Never,
    /// `rule:name`: another rule of the policy.
    Rule(String),
    /// `role:name`: the caller holds the role (case-insensitively; `%(field)s` reads the target).
    Role(String),
    /// `kind:match`: a credential (or a quoted literal) equals the match, e.g.
    /// `project_id:%(project_id)s`, `is_admin:True`, `'public':%(visibility)s`.
    Generic {
        /// The credential's name, or a quoted literal.
        kind: String,
        /// The value it must equal, with `%(field)s` read from the target.
        expected: String,
    },
    /// `not check`.
    Not(Box<Check>),
    /// `a and b and ...`.
    All(Vec<Check>),
    /// `a or b or ...`.
    Any(Vec<Check>),
}

/// What a rule is checked against: the fields of the image (or other resource) acted on.
/// A field that is absent (or null) matches nothing, not even another absent value.
#[derive(Clone, Debug, Default)]
pub struct Target(BTreeMap<String, String>);

impl Target {
    /// Sets `field` when `value` is present.
    pub fn with(mut self, field: &str, value: Option<impl ToString>) -> Self {
        if let Some(value) = value {
            self.0.insert(field.to_owned(), value.to_string());
        }
        self
    }

    fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }
}

impl Check {
    /// Parses a check string as oslo.policy does: `not` binds tightest, then `and`, then `or`.
    pub fn parse(text: &str) -> Result<Check, String> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Ok(Check::Always);
        }
        let mut parser = Parser { tokens: &tokens, at: 0 };
        let check = parser.any()?;
        match parser.tokens.get(parser.at) {
            None => Ok(check),
            Some(token) => Err(format!("unexpected '{}'", token.text())),
        }
    }

    /// The names of the rules this check refers to.
    pub fn references(&self) -> Vec<&str> {
        match self {
            Check::Rule(name) => vec![name],
            Check::Not(inner) => inner.references(),
            Check::All(all) | Check::Any(all) => all.iter().flat_map(Check::references).collect(),
            Check::Always | Check::Never | Check::Role(_) | Check::Generic { .. } => vec![],
        }
    }

    /// Whether the caller passes this check on `target`; `rule` resolves `rule:name` (the
    /// policy guarantees at load time that every name resolves and that no rule loops).
    pub fn passes(&self, ctx: &RequestContext, target: &Target, rule: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Check::Always => true,
            Check::Never => false,
            Check::Rule(name) => rule(name),
            Check::Role(role) => substitute(role, target).is_some_and(|role| ctx.has_role(&role.trim().to_lowercase())),
            Check::Generic { kind, expected } => {
                let Some(expected) = substitute(expected, target) else { return false };
                match literal(kind) {
                    Some(literal) => literal == expected,
                    None => credential(ctx, kind).is_some_and(|values| values.contains(&expected)),
                }
            }
            Check::Not(inner) => !inner.passes(ctx, target, rule),
            Check::All(all) => all.iter().all(|c| c.passes(ctx, target, rule)),
            Check::Any(any) => any.iter().any(|c| c.passes(ctx, target, rule)),
        }
    }
}

/// The caller's credentials a generic check may name, as oslo.policy's credentials dict
/// holds them (booleans as Python prints them). An absent value matches nothing.
fn credential(ctx: &RequestContext, kind: &str) -> Option<Vec<String>> {
    match kind {
        "project_id" | "tenant" | "tenant_id" => ctx.project_id.clone().map(|p| vec![p]),
        "user_id" | "user" => ctx.user_id.clone().map(|u| vec![u]),
        "roles" => Some(ctx.roles.clone()),
        "is_admin" => Some(vec![if ctx.is_admin { "True" } else { "False" }.to_owned()]),
        _ => None,
    }
}

/// A quoted literal (`'public'`) or a Python constant standing for itself.
fn literal(kind: &str) -> Option<String> {
    let quoted = |q: char| kind.len() >= 2 && kind.starts_with(q) && kind.ends_with(q);
    if quoted('\'') || quoted('"') {
        return Some(kind[1..kind.len() - 1].to_owned());
    }
    let constant = matches!(kind, "True" | "False") || (!kind.is_empty() && kind.chars().all(|c| c.is_ascii_digit()));
    constant.then(|| kind.to_owned())
}

/// `text` with every `%(field)s` replaced by the target's value; `None` when a field is absent.
fn substitute(text: &str, target: &Target) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("%(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find(")s")?;
        out.push_str(target.get(&after[..end])?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Check(Check, String),
}

impl Token {
    fn text(&self) -> &str {
        match self {
            Token::Open => "(",
            Token::Close => ")",
            Token::And => "and",
            Token::Or => "or",
            Token::Not => "not",
            Token::Check(_, text) => text,
        }
    }
}

/// Splits on whitespace and peels parentheses off the words, as oslo.policy's tokenizer does.
fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    for word in text.split_whitespace() {
        let inner = word.trim_start_matches('(');
        tokens.extend(std::iter::repeat_with(|| Token::Open).take(word.len() - inner.len()));
        let core = inner.trim_end_matches(')');
        match core.to_lowercase().as_str() {
            "" => {}
            "and" => tokens.push(Token::And),
            "or" => tokens.push(Token::Or),
            "not" => tokens.push(Token::Not),
            _ => tokens.push(Token::Check(check(core)?, core.to_owned())),
        }
        tokens.extend(std::iter::repeat_with(|| Token::Close).take(inner.len() - core.len()));
    }
    Ok(tokens)
}

fn check(word: &str) -> Result<Check, String> {
    match word {
        "@" => return Ok(Check::Always),
        "!" => return Ok(Check::Never),
        _ => {}
    }
    let Some((kind, expected)) = word.split_once(':') else {
        return Err(format!("'{word}' is not a check (expected kind:value, @ or !)"));
    };
    if kind.is_empty() || expected.is_empty() {
        return Err(format!("'{word}' is not a check (expected kind:value, @ or !)"));
    }
    match kind {
        "rule" => Ok(Check::Rule(expected.to_owned())),
        "role" => Ok(Check::Role(expected.to_owned())),
        "http" | "https" => Err(format!("'{word}': remote (http) checks are not supported")),
        _ => Ok(Check::Generic { kind: kind.to_owned(), expected: expected.to_owned() }),
    }
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
}

impl Parser<'_> {
    fn next_is(&mut self, token: &Token) -> bool {
        let found = self.tokens.get(self.at) == Some(token);
        if found {
            self.at += 1;
        }
        found
    }

    fn any(&mut self) -> Result<Check, String> {
        let mut alternatives = vec![self.all()?];
        while self.next_is(&Token::Or) {
            alternatives.push(self.all()?);
        }
        Ok(if alternatives.len() == 1 { alternatives.remove(0) } else { Check::Any(alternatives) })
    }

    fn all(&mut self) -> Result<Check, String> {
        let mut required = vec![self.unary()?];
        while self.next_is(&Token::And) {
            required.push(self.unary()?);
        }
        Ok(if required.len() == 1 { required.remove(0) } else { Check::All(required) })
    }

    fn unary(&mut self) -> Result<Check, String> {
        let Some(token) = self.tokens.get(self.at) else {
            return Err("the rule ends where a check was expected".into());
        };
        self.at += 1;
        match token {
            Token::Not => Ok(Check::Not(Box::new(self.unary()?))),
            Token::Open => {
                let inner = self.any()?;
                if self.next_is(&Token::Close) { Ok(inner) } else { Err("a '(' is not closed".into()) }
            }
            Token::Check(check, _) => Ok(check.clone()),
            other => Err(format!("unexpected '{}' where a check was expected", other.text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(project: &str, roles: &[&str]) -> RequestContext {
        RequestContext::new(Some(project.into()), Some("u1".into()), roles.iter().map(|r| r.to_string()), "req".into())
    }

    fn passes(rule: &str, ctx: &RequestContext, target: &Target) -> bool {
        Check::parse(rule).expect("parses").passes(ctx, target, &|name| name == "yes")
    }

    fn image(owner: &str, visibility: &str) -> Target {
        Target::default().with("project_id", Some(owner)).with("visibility", Some(visibility))
    }

    #[test]
    fn empty_rule_and_at_pass_everyone_and_bang_no_one() {
        let anyone = ctx("p1", &[]);
        assert!(passes("", &anyone, &Target::default()));
        assert!(passes("@", &anyone, &Target::default()));
        assert!(!passes("!", &anyone, &Target::default()));
    }

    #[test]
    fn roles_compare_case_insensitively() {
        assert!(passes("role:Member", &ctx("p1", &["MEMBER"]), &Target::default()));
        assert!(!passes("role:admin", &ctx("p1", &["member"]), &Target::default()));
    }

    #[test]
    fn project_check_reads_the_target() {
        let target = image("p1", "private");
        assert!(passes("project_id:%(project_id)s", &ctx("p1", &[]), &target));
        assert!(!passes("project_id:%(project_id)s", &ctx("p2", &[]), &target));
    }

    #[test]
    fn an_absent_target_field_matches_nothing() {
        let outside = RequestContext::outside_project(None, "req".into());
        assert!(!passes("project_id:%(project_id)s", &outside, &Target::default()));
        assert!(!passes("project_id:%(owner)s", &ctx("p1", &[]), &Target::default()));
    }

    #[test]
    fn quoted_literals_compare_with_the_target() {
        assert!(passes("'public':%(visibility)s", &ctx("p2", &[]), &image("p1", "public")));
        assert!(!passes("'public':%(visibility)s", &ctx("p2", &[]), &image("p1", "shared")));
    }

    #[test]
    fn is_admin_true_checks_the_context_flag() {
        assert!(passes("is_admin:True", &ctx("p1", &["admin"]), &Target::default()));
        assert!(!passes("is_admin:True", &ctx("p1", &["member"]), &Target::default()));
    }

    #[test]
    fn not_binds_tighter_than_and_which_binds_tighter_than_or() {
        let member = ctx("p1", &["member"]);
        assert!(passes("role:admin or role:member and not role:reader or rule:yes", &member, &Target::default()));
        assert!(!passes("role:admin or role:member and not role:reader", &member, &Target::default()));
        assert!(passes("not (role:admin or role:nobody)", &member, &Target::default()));
    }

    #[test]
    fn glance_get_image_rule_reads_as_written() {
        let rule = "rule:yes or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))";
        assert_eq!(
            Check::parse(rule).expect("parses"),
            Check::Any(vec![
                Check::Rule("yes".into()),
                Check::All(vec![
                    Check::Role("reader".into()),
                    Check::Any(vec![
                        Check::Generic { kind: "project_id".into(), expected: "%(project_id)s".into() },
                        Check::Generic { kind: "'public'".into(), expected: "%(visibility)s".into() },
                    ]),
                ]),
            ])
        );
    }

    #[test]
    fn malformed_rules_say_why() {
        assert_eq!(Check::parse("role:admin or").expect_err("refused"), "the rule ends where a check was expected");
        assert_eq!(Check::parse("(role:admin").expect_err("refused"), "a '(' is not closed");
        assert_eq!(Check::parse("role:admin)").expect_err("refused"), "unexpected ')'");
        assert!(Check::parse("admin").expect_err("refused").contains("is not a check"));
        assert!(Check::parse("http://example.com/check").expect_err("refused").contains("not supported"));
        assert_eq!(
            Check::parse("role:a and and role:b").expect_err("refused"),
            "unexpected 'and' where a check was expected"
        );
    }
}
