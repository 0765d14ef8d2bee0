//! glance-download (docs/glance-v2-api.md §6.1 step 2): the other region's image endpoint
//! from the caller's service catalog, the remote image's metadata read with the caller's
//! token, and what the import takes from it: the formats, the properties Glance copies, and
//! the size and digests the data must arrive with.

use glint_core::context::RequestContext;
use glint_core::fetch::{FetchError, Fetcher};
use glint_core::image::import::{Caller, Remote};
use glint_core::image::location_import::Validation;
use glint_core::image::schema::{BASE_FIELDS, is_reserved};
use glint_core::image::{Image, check_quotas, data::Hasher};
use glint_core::keystone::image_endpoint;
use glint_core::policy::{self, Operation};
use glint_core::task::Task;
use serde_json::Value;

use super::Deps;
use crate::FlowError;

/// Largest image document read (Glance's are a few KiB).
const METADATA_LIMIT: u64 = 1 << 20;

/// What the remote image service says of the image, and where its data is.
#[derive(Debug)]
pub(super) struct RemoteImage {
    /// `<endpoint>/v2/images/<id>/file`.
    pub file_url: String,
    /// The caller's token, which reads the data too.
    pub token: Option<String>,
    pub disk_format: String,
    pub container_format: String,
    /// The remote `size`: the download must have exactly as many bytes.
    pub size: u64,
    /// The remote `checksum` and `os_hash_value` the download must match.
    pub checks: Vec<Validation>,
    /// The properties to copy (those with a configured prefix).
    pub properties: Vec<(String, String)>,
}

impl RemoteImage {
    /// The properties `caller` may give `image` (the property protections judge each by the
    /// caller's roles, as a PATCH of the caller would be judged; refused ones are left out and
    /// logged), and an error when the image would then exceed the property quotas.
    pub fn admitted_for(
        mut self,
        image: &Image,
        task: &Task,
        caller: Option<&Caller>,
        deps: &Deps,
    ) -> Result<Self, FlowError> {
        let roles = caller.map(|c| c.roles.clone()).unwrap_or_default();
        let ctx = RequestContext::new(
            Some(task.owner.clone()),
            task.user_id.clone(),
            roles,
            task.request_id.clone().unwrap_or_default(),
        )
        .under(deps.policy.clone());
        self.properties.retain(|(name, _)| {
            let operation = if image.properties.contains_key(name) { Operation::Update } else { Operation::Create };
            let allowed = policy::property_allowed(&ctx, name, operation);
            if !allowed {
                tracing::warn!(image = %image.id, property = %name, "the property protections keep a remote property from the import");
            }
            allowed
        });
        let mut copied = image.clone();
        copied.properties.extend(self.properties.iter().map(|(name, value)| (name.clone(), Some(value.clone()))));
        check_quotas(&copied, &deps.config.images)
            .map_err(|e| FlowError::Abort(format!("The remote image's properties cannot be copied: {e}")))?;
        Ok(self)
    }

    /// `image` as the import will store it: with the remote formats (the format checks and
    /// the conversion go by them).
    pub fn applied_to(&self, mut image: Image) -> Image {
        image.disk_format = Some(self.disk_format.clone());
        image.container_format = Some(self.container_format.clone());
        image
    }
}

/// Finds `remote` through the catalog of `caller` and reads its metadata (through `fetcher`,
/// so the endpoint passes the import URL filter). `prefixes` name the properties to copy.
pub(super) async fn inspect(
    fetcher: &Fetcher,
    remote: &Remote,
    caller: Option<&Caller>,
    prefixes: &[String],
) -> Result<RemoteImage, FlowError> {
    let (region, interface, id) = (&remote.region, &remote.interface, &remote.image_id);
    let catalog = caller.and_then(|c| c.service_catalog.as_ref()).ok_or_else(|| {
        FlowError::Abort(format!(
            "The import request came without a service catalog to find the image endpoint of region {region} in"
        ))
    })?;
    let endpoint = image_endpoint(catalog, region, interface)
        .ok_or_else(|| FlowError::Abort(format!("{interface} glance endpoint not found for region {region}")))?;
    let token = caller.and_then(|c| c.auth_token.clone());
    let url = format!("{endpoint}/v2/images/{id}");
    let document = match fetcher.json_as(&url, METADATA_LIMIT, token.as_deref()).await {
        Ok(document) => document,
        Err(FetchError::Status(404, _)) => {
            return Err(FlowError::Abort(format!("Remote image {id} was not found in region {region}")));
        }
        Err(FetchError::Refused(why)) => {
            return Err(FlowError::Abort(format!("Processed URI for glance-download does not pass filtering: {why}")));
        }
        Err(err) => return Err(err.into()),
    };
    let status = document.get("status").and_then(Value::as_str).unwrap_or_default();
    if status != "active" {
        return Err(FlowError::Abort(format!("Source image status should be active instead of {status}")));
    }
    let text = |key: &str| document.get(key).and_then(Value::as_str).filter(|v| !v.is_empty());
    let format = |key: &str| {
        text(key).map(str::to_owned).ok_or_else(|| FlowError::Abort(format!("Remote image {id} has no {key}")))
    };
    let size = document
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| FlowError::Abort(format!("Size attribute of remote image {id} could not be determined.")))?;
    let mut checks = Vec::new();
    if let Some(checksum) = text("checksum") {
        checks.push(Validation { algo: "md5".into(), value: checksum.to_lowercase() });
    }
    // A digest Glint cannot compute (another os_hash_algo) is left to the checksum and size.
    if let (Some(algo), Some(value)) = (text("os_hash_algo"), text("os_hash_value"))
        && Hasher::of(algo).is_some()
    {
        checks.push(Validation { algo: algo.to_owned(), value: value.to_lowercase() });
    }
    Ok(RemoteImage {
        file_url: format!("{url}/file"),
        token,
        disk_format: format("disk_format")?,
        container_format: format("container_format")?,
        size,
        checks,
        properties: copied(&document, prefixes),
    })
}

/// The properties of the remote image `document` whose names start with one of `prefixes`,
/// as Glance copies them: never a base field or a name reserved to the service
/// (`os_glance_*`), and only scalar values (as the strings properties are).
fn copied(document: &Value, prefixes: &[String]) -> Vec<(String, String)> {
    let Some(fields) = document.as_object() else { return Vec::new() };
    fields
        .iter()
        .filter(|(key, _)| prefixes.iter().any(|p| key.starts_with(p.as_str())))
        .filter(|(key, _)| !BASE_FIELDS.contains(&key.as_str()) && !is_reserved(key))
        .filter_map(|(key, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Bool(_) | Value::Number(_) => value.to_string(),
                _ => return None,
            };
            Some((key.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_with_a_configured_prefix_are_copied_but_never_base_or_reserved_ones() {
        let document = serde_json::json!({
            "id": "x", "status": "active", "os_hash_algo": "sha512", "os_hidden": false,
            "hw_disk_bus": "scsi", "hw_qemu_guest_agent": "yes", "trait:CUSTOM_X": "required",
            "os_distro": "ubuntu", "os_type": "linux", "os_secure_boot": "required",
            "os_glance_import_task": "t", "architecture": "x86_64", "hw_weird": ["a"], "hw_cpu_cores": 4
        });
        let prefixes = glint_core::config::ImportConfig::default().glance_download_properties;
        let mut names: Vec<String> = copied(&document, &prefixes).into_iter().map(|(k, _)| k).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "hw_cpu_cores",
                "hw_disk_bus",
                "hw_qemu_guest_agent",
                "os_distro",
                "os_secure_boot",
                "os_type",
                "trait:CUSTOM_X"
            ]
        );
        let everything_os = copied(&document, &["os_".to_owned()]);
        assert!(everything_os.iter().all(|(k, _)| !matches!(k.as_str(), "os_hash_algo" | "os_hidden")));
        assert!(everything_os.iter().all(|(k, _)| !k.starts_with("os_glance")));
        assert!(copied(&document, &["hw_cpu".to_owned()]).contains(&("hw_cpu_cores".into(), "4".into())));
    }
}
