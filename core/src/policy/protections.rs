//! Glance's property protections: who may create, read, update and delete which extra
//! properties, per property-name pattern, by roles or by policy rules.

use std::path::Path;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{Policy, Target};
use crate::context::RequestContext;
use crate::{Error, Result};

/// How the protection file names who may act: roles (Glance's default) or policy rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleFormat {
    /// `create = admin,member`: any of the roles.
    #[default]
    Roles,
    /// `create = some_rule`: one rule of the policy.
    Policies,
}

/// An operation on an extra property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Setting a property the image does not have (or the caller cannot read).
    Create,
    /// Seeing it in responses.
    Read,
    /// Changing its value.
    Update,
    /// Removing it.
    Delete,
}

impl Operation {
    const ALL: [Operation; 4] = [Operation::Create, Operation::Read, Operation::Update, Operation::Delete];

    fn key(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Read => "read",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

#[derive(Debug)]
enum Allowed {
    Everyone,
    NoOne,
    Roles(Vec<String>),
    Rule(String),
}

/// The sections of a property protection file, in file order: the first whose pattern is
/// found in a property name decides; a name no section matches is refused every operation.
#[derive(Debug)]
pub struct PropertyProtections {
    sections: Vec<(Regex, [Allowed; 4])>,
}

impl PropertyProtections {
    /// Reads `path` (Glance's INI format: `[pattern]` sections with create/read/update/delete
    /// lines). Every section must name all four operations; `policies` must name rules of
    /// `policy`. Errors carry the file, the line and the reason.
    pub(super) fn load(path: &Path, format: RuleFormat, policy: &Policy) -> Result<PropertyProtections> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("property protection file {}: {e}", path.display())))?;
        let invalid = |line: usize, reason: String| {
            Error::Config(format!("property protection file {}:{line}: {reason}", path.display()))
        };
        let mut sections = Vec::new();
        for section in ini_sections(&source).map_err(|(line, reason)| invalid(line, reason))? {
            // Glance's own os_glance_* properties are readable and writable by everyone
            // whatever the file says (its bug 2085321), so a section of that name is ignored.
            if section.name.starts_with("os_glance") {
                continue;
            }
            let pattern = Regex::new(section.name)
                .map_err(|e| invalid(section.line, format!("[{}] is not a regular expression: {e}", section.name)))?;
            let mut allowed = Vec::new();
            for operation in Operation::ALL {
                let Some((line, value)) = section.get(operation.key()) else {
                    return Err(invalid(
                        section.line,
                        format!("[{}] does not say who may {}", section.name, operation.key()),
                    ));
                };
                allowed.push(parse_allowed(value, format, policy).map_err(|reason| invalid(line, reason))?);
            }
            let allowed: [Allowed; 4] =
                allowed.try_into().map_err(|_| invalid(section.line, "four operations".into()))?;
            sections.push((pattern, allowed));
        }
        Ok(PropertyProtections { sections })
    }

    /// Whether the caller may do `operation` on the extra property `name`.
    pub fn allows(&self, ctx: &RequestContext, policy: &Policy, name: &str, operation: Operation) -> bool {
        if name.starts_with("os_glance") {
            return true;
        }
        let Some((_, allowed)) = self.sections.iter().find(|(pattern, _)| pattern.is_match(name)) else {
            return false;
        };
        match &allowed[operation as usize] {
            Allowed::Everyone => true,
            Allowed::NoOne => false,
            Allowed::Roles(roles) => roles.iter().any(|role| ctx.has_role(role)),
            Allowed::Rule(rule) => policy.check(rule, ctx, &Target::default()),
        }
    }
}

fn parse_allowed(value: &str, format: RuleFormat, policy: &Policy) -> std::result::Result<Allowed, String> {
    let items: Vec<String> =
        value.split(',').map(|item| item.trim().to_lowercase()).filter(|item| !item.is_empty()).collect();
    let everyone = items.iter().any(|item| item == "@");
    let no_one = items.iter().any(|item| item == "!");
    if everyone && no_one {
        return Err(format!("'{value}': '@' and '!' are mutually exclusive"));
    }
    if everyone {
        return Ok(Allowed::Everyone);
    }
    if no_one || items.is_empty() {
        return Ok(Allowed::NoOne);
    }
    match format {
        RuleFormat::Roles => Ok(Allowed::Roles(items)),
        RuleFormat::Policies if items.len() > 1 => {
            Err(format!("'{value}': one policy rule per operation (combine rules in the policy file)"))
        }
        RuleFormat::Policies => {
            let rule = value.trim().to_owned();
            if policy.rules.contains_key(&rule) {
                Ok(Allowed::Rule(rule))
            } else {
                Err(format!("rule '{rule}' is not defined in the policy"))
            }
        }
    }
}

struct Section<'a> {
    name: &'a str,
    line: usize,
    entries: Vec<(usize, &'a str, &'a str)>,
}

impl Section<'_> {
    fn get(&self, key: &str) -> Option<(usize, &str)> {
        self.entries.iter().rev().find(|(_, k, _)| k.eq_ignore_ascii_case(key)).map(|(line, _, value)| (*line, *value))
    }
}

/// The sections of an INI file as Python's configparser reads Glance's (no continuation
/// lines: no protection value needs one).
fn ini_sections(source: &str) -> std::result::Result<Vec<Section<'_>>, (usize, String)> {
    let mut sections: Vec<Section> = Vec::new();
    for (index, raw) in source.lines().enumerate() {
        let line = index + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') || text.starts_with(';') {
            continue;
        }
        if let Some(name) = text.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            if sections.iter().any(|s| s.name == name) {
                return Err((line, format!("section [{name}] appears twice")));
            }
            sections.push(Section { name, line, entries: vec![] });
            continue;
        }
        let Some((key, value)) = text.split_once(['=', ':']) else {
            return Err((line, format!("'{text}' is neither a [section] nor a key = value line")));
        };
        let Some(section) = sections.last_mut() else {
            return Err((line, "a key = value line before any [section]".into()));
        };
        section.entries.push((line, key.trim(), value.trim()));
    }
    Ok(sections)
}
