//! Who may do what: Glance's rules as data (its defaults, overridable by an oslo.policy file
//! and property protections), plus the storage-level visibility of images. Handlers ask here.

mod defaults;
mod protections;
mod rule;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

pub use protections::{Operation, PropertyProtections, RuleFormat};
pub use rule::{Check, Target};

use crate::context::RequestContext;
use crate::image::{Image, Visibility};
use crate::{Error, Result};

/// The effective rules: Glance's defaults, with an operator's policy file on top.
pub struct Policy {
    rules: BTreeMap<String, Entry>,
    protections: Option<PropertyProtections>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let overridden = self.rules.values().filter(|entry| entry.overridden).count();
        write!(f, "Policy({} rules, {overridden} overridden)", self.rules.len())
    }
}

struct Entry {
    text: String,
    check: Check,
    overridden: bool,
}

static GLANCE_DEFAULTS: LazyLock<Arc<Policy>> = LazyLock::new(|| {
    let policy =
        Policy::from_rules(defaults::RULES.iter().map(|(name, text)| (name.to_string(), text.to_string())), |_| None);
    Arc::new(policy.expect("Glance's default rules parse and resolve"))
});

impl Policy {
    /// Glance's default policy, shared.
    pub fn glance_defaults() -> Arc<Policy> {
        GLANCE_DEFAULTS.clone()
    }

    /// The defaults with `file` (YAML or JSON, as oslo.policy reads it) on top, and the
    /// property protections of `protections`. A rule that does not parse, names an unknown
    /// rule or loops fails with the file's line and the reason.
    pub fn load(file: Option<&Path>, protections: Option<(&Path, RuleFormat)>) -> Result<Policy> {
        let mut rules: Vec<(String, String)> =
            defaults::RULES.iter().map(|(name, text)| (name.to_string(), text.to_string())).collect();
        let mut source = String::new();
        if let Some(file) = file {
            source = std::fs::read_to_string(file)
                .map_err(|e| Error::Config(format!("policy file {}: {e}", file.display())))?;
            rules.extend(
                parse_file(&source).map_err(|e| Error::Config(format!("policy file {}: {e}", file.display())))?,
            );
        }
        let located = |name: &str| file.map(|f| format!("{}:{}", f.display(), line_of(&source, name)));
        let mut policy = Policy::from_rules(rules, located)?;
        policy.protections = match protections {
            Some((path, format)) => Some(PropertyProtections::load(path, format, &policy)?),
            None => None,
        };
        Ok(policy)
    }

    /// Later entries of `rules` override earlier ones; `located` names where a rule was written.
    fn from_rules(
        rules: impl IntoIterator<Item = (String, String)>,
        located: impl Fn(&str) -> Option<String>,
    ) -> Result<Policy> {
        let defaults: BTreeMap<&str, &str> = defaults::RULES.iter().copied().collect();
        let mut parsed = BTreeMap::new();
        for (name, text) in rules {
            let check = Check::parse(&text).map_err(|reason| invalid(&located(&name), &name, &reason))?;
            let overridden = defaults.get(name.as_str()) != Some(&text.as_str());
            parsed.insert(name, Entry { text, check, overridden });
        }
        for (name, entry) in &parsed {
            for reference in entry.check.references() {
                if !parsed.contains_key(reference) {
                    return Err(invalid(&located(name), name, &format!("rule '{reference}' is not defined")));
                }
            }
        }
        let policy = Policy { rules: parsed, protections: None };
        for name in policy.rules.keys() {
            if let Some(cycle) = policy.cycle_from(name, &mut vec![]) {
                return Err(invalid(&located(name), name, &format!("rules refer to each other in a loop: {cycle}")));
            }
        }
        Ok(policy)
    }

    fn cycle_from<'a>(&'a self, name: &'a str, path: &mut Vec<&'a str>) -> Option<String> {
        if path.contains(&name) {
            path.push(name);
            return Some(path.join(" -> "));
        }
        path.push(name);
        let references = self.rules.get(name).map(|entry| entry.check.references()).unwrap_or_default();
        for reference in references {
            if let Some(cycle) = self.cycle_from(reference, path) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }

    /// Whether the caller passes rule `name` on `target` (an unknown name passes no one).
    /// `context_is_admin` holds for every admin context: the anonymous admin of no-auth mode
    /// has no roles, and a project context's flag was computed from this very rule.
    pub fn check(&self, name: &str, ctx: &RequestContext, target: &Target) -> bool {
        if name == "context_is_admin" && ctx.is_admin {
            return true;
        }
        self.rules.get(name).is_some_and(|entry| entry.check.passes(ctx, target, &|rule| self.check(rule, ctx, target)))
    }

    /// [`Policy::check`] as Glance answers a refusal: 403 naming the rule.
    pub fn enforce(&self, name: &str, ctx: &RequestContext, target: &Target) -> Result<()> {
        if self.check(name, ctx, target) { Ok(()) } else { Err(forbidden(name)) }
    }

    /// The property protections in force, if a file configures them.
    pub fn protections(&self) -> Option<&PropertyProtections> {
        self.protections.as_ref()
    }

    /// Every effective rule as a policy file would write it (`glint policy show`), each
    /// overridden one marked.
    pub fn show(&self) -> String {
        let mut out = String::new();
        for (name, entry) in &self.rules {
            let mark = if entry.overridden { "  # overridden" } else { "" };
            out.push_str(&format!("{}: {}{mark}\n", quote(name), quote(&entry.text)));
        }
        out
    }
}

fn quote(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn forbidden(rule: &str) -> Error {
    Error::Forbidden(format!("You are not authorized to complete {rule} action."))
}

fn invalid(location: &Option<String>, name: &str, reason: &str) -> Error {
    match location {
        Some(location) => Error::Config(format!("{location}: rule \"{name}\": {reason}")),
        None => Error::Config(format!("rule \"{name}\": {reason}")),
    }
}

/// The rules of a policy file: a mapping of names to check strings (JSON is YAML too).
fn parse_file(source: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let documents = yaml_rust2::YamlLoader::load_from_str(source).map_err(|e| e.to_string())?;
    let Some(document) = documents.into_iter().next() else { return Ok(vec![]) };
    let yaml_rust2::Yaml::Hash(mapping) = document else {
        return Err("expected a mapping of rule names to check strings".into());
    };
    mapping
        .into_iter()
        .map(|(name, check)| match (name, check) {
            // YAML reads an unquoted `!` (a tag) or `@` as an empty string, which allows everyone:
            // the opposite of what `!` means. Only a written `""` or `''` is the empty rule.
            (yaml_rust2::Yaml::String(name), yaml_rust2::Yaml::String(check))
                if check.is_empty() && !written_empty(source, &name) =>
            {
                Err(format!(
                    "line {}: rule \"{name}\": write \"!\", \"@\" and the empty rule \"\" in quotes",
                    line_of(source, &name)
                ))
            }
            (yaml_rust2::Yaml::String(name), yaml_rust2::Yaml::String(check)) => Ok((name, check)),
            (yaml_rust2::Yaml::String(name), _) => Err(format!(
                "line {}: rule \"{name}\": the check must be a string (quote \"@\" and \"!\")",
                line_of(source, &name)
            )),
            (name, _) => Err(format!("a rule name must be a string, not {name:?}")),
        })
        .collect()
}

/// Whether rule `name` is written as a quoted empty string (JSON or YAML, block or flow style).
fn written_empty(source: &str, name: &str) -> bool {
    let line = line_of(source, name);
    let Some(text) = source.lines().nth(line.wrapping_sub(1)) else { return false };
    let after_key = text.split_once(name).map_or("", |(_, rest)| rest);
    let value = after_key.trim_start_matches(['"', '\'']).trim_start().trim_start_matches(':').trim();
    let value = value.trim_end_matches([',', '}']).trim();
    value == "\"\"" || value == "''"
}

/// The 1-based line where rule `name` is written in `source` (0 when it cannot be found).
fn line_of(source: &str, name: &str) -> usize {
    let written = |line: &str| {
        let line = line.trim_start();
        [format!("\"{name}\""), format!("'{name}'"), name.to_owned()]
            .iter()
            .any(|key| line.strip_prefix(key.as_str()).is_some_and(|rest| rest.trim_start().starts_with(':')))
    };
    source.lines().position(written).map_or(0, |index| index + 1)
}

/// The target of a rule on `image`: its fields, as Glance's ImageTarget offers them
/// (`project_id` is the owner), and its extra properties.
pub fn image_target(image: &Image) -> Target {
    let mut target = Target::default()
        .with("id", Some(&image.id))
        .with("project_id", image.owner.as_ref())
        .with("owner", image.owner.as_ref())
        .with("visibility", Some(image.visibility.as_str()))
        .with("status", Some(image.status.as_str()))
        .with("name", image.name.as_ref())
        .with("disk_format", image.disk_format.as_ref())
        .with("container_format", image.container_format.as_ref())
        .with("protected", Some(python_bool(image.protected)))
        .with("os_hidden", Some(python_bool(image.os_hidden)));
    for (name, value) in &image.properties {
        target = target.with(name, value.as_ref());
    }
    target
}

/// The target of a rule about a resource that does not exist yet, or about the caller's own
/// project (listing): Glance's `{project_id, owner, visibility}`.
pub fn proposed_target(ctx: &RequestContext, owner: Option<&str>, visibility: Visibility) -> Target {
    let owner = owner.or(ctx.project_id.as_deref());
    Target::default().with("project_id", owner).with("owner", owner).with("visibility", Some(visibility.as_str()))
}

fn python_bool(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// Whether `image` exists for the caller at all (404 otherwise): Glance's database-level
/// visibility, then its `get_image` rule. `is_member` says whether the caller's project holds a
/// live membership of the image. The list's SQL filter ([`crate::image::query`],
/// `visibility_condition`) is the first half written as a query: change both.
pub fn can_see(ctx: &RequestContext, image: &Image, is_member: bool) -> bool {
    let stored_visible = ctx.is_admin
        || image.owner.is_none()
        || matches!(image.visibility, Visibility::Public | Visibility::Community)
        || ctx.owns(image.owner.as_deref())
        || (image.visibility == Visibility::Shared && is_member);
    stored_visible && ctx.policy.check("get_image", ctx, &member_target(ctx, image, is_member))
}

fn member_target(ctx: &RequestContext, image: &Image, is_member: bool) -> Target {
    image_target(image).with("member_id", if is_member { ctx.project_id.as_ref() } else { None })
}

/// Rule `rule` on an image the caller can see, as Glance enforces it: 403 naming the rule, or
/// 404 when the caller may not even `get_image` it (the refusal must not reveal the image).
pub fn check_image(ctx: &RequestContext, image: &Image, rule: &str) -> Result<()> {
    check_on_image(ctx, image, rule, image_target(image))
}

/// [`check_image`] with the target's `member_id` set: the member a member rule is about.
pub fn check_member(ctx: &RequestContext, image: &Image, rule: &str, member_id: Option<&str>) -> Result<()> {
    check_on_image(ctx, image, rule, image_target(image).with("member_id", member_id))
}

fn check_on_image(ctx: &RequestContext, image: &Image, rule: &str, target: Target) -> Result<()> {
    if ctx.policy.check(rule, ctx, &target) {
        Ok(())
    } else if rule == "get_image" || !ctx.policy.check("get_image", ctx, &target) {
        Err(Error::NotFound(format!("No image found with ID {}", image.id)))
    } else {
        Err(forbidden(rule))
    }
}

/// A rule about no particular resource (`get_images`, `tasks_api_access`, ...): the target is
/// the caller's own project.
pub fn check_own(ctx: &RequestContext, rule: &str) -> Result<()> {
    ctx.policy.enforce(rule, ctx, &proposed_target(ctx, None, Visibility::Private))
}

/// `add_image` and the visibility rule of the new image; a refusal because of a foreign
/// owner says so, as Glance's does.
pub fn check_create(ctx: &RequestContext, owner: Option<&str>, visibility: Visibility) -> Result<()> {
    let target = proposed_target(ctx, owner, visibility);
    if !ctx.policy.check("add_image", ctx, &target) {
        return Err(match owner {
            Some(owner) if ctx.project_id.as_deref() != Some(owner) => {
                Error::Forbidden(format!("You are not permitted to create images owned by '{owner}'."))
            }
            _ => forbidden("add_image"),
        });
    }
    check_visibility(ctx, &target, visibility)
}

/// `publicize_image` / `communitize_image` when `visibility` is set on `target`.
pub fn check_visibility(ctx: &RequestContext, target: &Target, visibility: Visibility) -> Result<()> {
    match visibility {
        Visibility::Public => ctx.policy.enforce("publicize_image", ctx, target),
        Visibility::Community => ctx.policy.enforce("communitize_image", ctx, target),
        Visibility::Private | Visibility::Shared => Ok(()),
    }
}

/// Replacing the owner is an admin's business (upstream checks `replace` only; we check both).
pub fn check_owner_change(ctx: &RequestContext) -> Result<()> {
    if ctx.is_admin { Ok(()) } else { Err(Error::Forbidden("Owner can't be updated by non admin.".into())) }
}

/// Whether the caller may `operation` extra property `name` under the property protections
/// (always, when none are configured).
pub fn property_allowed(ctx: &RequestContext, name: &str, operation: Operation) -> bool {
    ctx.policy.protections().is_none_or(|protections| protections.allows(ctx, &ctx.policy, name, operation))
}

/// [`property_allowed`] as Glance refuses: 403 `Attribute 'x' is reserved.`
pub fn check_property(ctx: &RequestContext, name: &str, operation: Operation) -> Result<()> {
    if property_allowed(ctx, name, operation) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("Attribute '{name}' is reserved.")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn ctx(project: &str, roles: &[&str], policy: &Arc<Policy>) -> RequestContext {
        RequestContext::new(Some(project.into()), None, roles.iter().map(|r| r.to_string()), "req".into())
            .under(policy.clone())
    }

    fn error(result: Result<Policy>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn a_policy_file_overrides_only_the_rules_it_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file =
            write(&dir, "policy.yaml", "# ours\n\"publicize_image\": \"role:member\"\ntasks_api_access: \"!\"\n");
        let policy = Arc::new(Policy::load(Some(&file), None).expect("loads"));
        let member = ctx("p1", &["member"], &policy);
        assert!(policy.check("publicize_image", &member, &Target::default()));
        assert!(!policy.check("tasks_api_access", &ctx("p1", &["admin"], &policy), &Target::default()));
        assert!(!policy.check("copy_image", &member, &Target::default()), "defaults stay");
        assert!(policy.show().contains("\"tasks_api_access\": \"!\"  # overridden\n"));
        assert!(policy.show().contains("\"copy_image\": \"rule:context_is_admin\"\n"));
    }

    #[test]
    fn json_policy_files_are_read_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(&dir, "policy.json", "{\n  \"download_image\": \"role:admin\"\n}\n");
        let policy = Arc::new(Policy::load(Some(&file), None).expect("loads"));
        assert!(!policy.check("download_image", &ctx("p1", &["member"], &policy), &Target::default()));
    }

    #[test]
    fn context_is_admin_decides_who_is_admin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(&dir, "policy.yaml", "context_is_admin: role:cloud_admin\n");
        let policy = Arc::new(Policy::load(Some(&file), None).expect("loads"));
        assert!(ctx("p1", &["cloud_admin"], &policy).is_admin);
        assert!(!ctx("p1", &["admin"], &policy).is_admin);
    }

    #[test]
    fn a_rule_that_does_not_parse_names_the_line_and_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(&dir, "policy.yaml", "get_image: \"@\"\n\nadd_image: \"role:admin or\"\n");
        let message = error(Policy::load(Some(&file), None));
        assert!(message.contains("policy.yaml:3: rule \"add_image\": the rule ends"), "{message}");
    }

    #[test]
    fn an_unknown_rule_reference_or_a_loop_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(&dir, "unknown.yaml", "get_image: rule:no_such_rule\n");
        assert!(
            error(Policy::load(Some(&file), None))
                .contains("unknown.yaml:1: rule \"get_image\": rule 'no_such_rule' is not defined")
        );
        let file = write(&dir, "loop.yaml", "a: rule:b\nb: rule:a\n");
        assert!(error(Policy::load(Some(&file), None)).contains("in a loop: a -> b -> a"));
    }

    #[test]
    fn an_unquoted_bang_is_a_yaml_tag_and_is_explained() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(&dir, "policy.yaml", "tasks_api_access: !\n");
        let message = error(Policy::load(Some(&file), None));
        assert!(message.contains("policy.yaml: line 1: rule \"tasks_api_access\": write \"!\""), "{message}");
        let file = write(&dir, "empty.yaml", "tasks_api_access: ''\nget_task: \"\"\n");
        assert!(Policy::load(Some(&file), None).is_ok(), "a quoted empty rule is the empty rule");
    }

    #[test]
    fn property_protections_by_roles_first_matching_section_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = "[^x_secret_.*]\ncreate = admin\nread = admin\nupdate = admin\ndelete = admin\n\n\
                     [.*]\ncreate = @\nread = @\nupdate = member\ndelete = !\n";
        let file = write(&dir, "protections.conf", rules);
        let policy = Arc::new(Policy::load(None, Some((&file, RuleFormat::Roles))).expect("loads"));
        let member = ctx("p1", &["member"], &policy);
        let admin = ctx("p1", &["admin"], &policy);
        assert!(!property_allowed(&member, "x_secret_key", Operation::Read));
        assert!(property_allowed(&admin, "x_secret_key", Operation::Read));
        assert!(property_allowed(&member, "os_distro", Operation::Update));
        assert!(!property_allowed(&ctx("p1", &["reader"], &policy), "os_distro", Operation::Update));
        assert!(!property_allowed(&admin, "os_distro", Operation::Delete));
        assert!(property_allowed(&member, "os_glance_import_task", Operation::Update), "Glance's own stay open");
    }

    #[test]
    fn property_protections_by_policies_name_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(&dir, "policy.yaml", "secret_readers: role:auditor\n");
        let rules = "[^x_secret_.*]\ncreate = context_is_admin\nread = secret_readers\nupdate = !\ndelete = !\n";
        let protections = write(&dir, "protections.conf", rules);
        let policy = Arc::new(Policy::load(Some(&file), Some((&protections, RuleFormat::Policies))).expect("loads"));
        assert!(property_allowed(&ctx("p1", &["auditor"], &policy), "x_secret_key", Operation::Read));
        assert!(!property_allowed(&ctx("p1", &["admin"], &policy), "x_secret_key", Operation::Read));
        assert!(
            !property_allowed(&ctx("p1", &["admin"], &policy), "unmatched", Operation::Read),
            "no section: refused"
        );
    }

    #[test]
    fn broken_protection_files_say_where() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = write(&dir, "a.conf", "[.*]\ncreate = @\nread = @\nupdate = @\n");
        assert!(
            error(Policy::load(None, Some((&missing, RuleFormat::Roles))))
                .contains("a.conf:1: [.*] does not say who may delete")
        );
        let both = write(&dir, "b.conf", "[.*]\ncreate = @,!\nread = @\nupdate = @\ndelete = @\n");
        assert!(
            error(Policy::load(None, Some((&both, RuleFormat::Roles))))
                .contains("b.conf:2: '@,!': '@' and '!' are mutually exclusive")
        );
        let regex = write(&dir, "c.conf", "[x_(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n");
        assert!(
            error(Policy::load(None, Some((&regex, RuleFormat::Roles))))
                .contains("c.conf:1: [x_(] is not a regular expression")
        );
        let rule = write(&dir, "d.conf", "[.*]\ncreate = nobody\nread = @\nupdate = @\ndelete = @\n");
        assert!(
            error(Policy::load(None, Some((&rule, RuleFormat::Policies))))
                .contains("d.conf:2: rule 'nobody' is not defined")
        );
    }
}
