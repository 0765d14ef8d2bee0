//! Glance's default policy (glance/policies/*.py, secure RBAC), rule for rule. Staging and
//! importing are `modify_image` in Glance, so there is no `stage_image` rule here either.

const ADMIN: &str = "rule:context_is_admin";
const ADMIN_OR_PROJECT_MEMBER: &str = "rule:context_is_admin or (role:member and project_id:%(project_id)s)";
const ADMIN_OR_PROJECT_READER: &str = "rule:context_is_admin or (role:reader and project_id:%(project_id)s)";
const GET_IMAGE: &str = "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or \
     project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s))";
const DOWNLOAD_IMAGE: &str = "rule:context_is_admin or (role:member and (project_id:%(project_id)s or \
     project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s))";
const CREATE_IMAGE: &str =
    "rule:context_is_admin or (role:member and project_id:%(project_id)s and project_id:%(owner)s)";
const GET_NAMESPACE: &str =
    "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))";
const ADMIN_OR_SHARED_MEMBER: &str = "rule:context_is_admin or (role:member and project_id:%(member_id)s)";
const ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER: &str =
    "rule:context_is_admin or role:reader and (project_id:%(project_id)s or project_id:%(member_id)s)";
const SERVICE_OR_PROJECT_MEMBER: &str =
    "rule:service_api or (role:member and project_id:%(project_id)s and project_id:%(owner)s)";
const METADEF_ADMIN: &str = "rule:metadef_admin";

/// Every rule Glance defines, with its default check string.
pub const RULES: &[(&str, &str)] = &[
    ("default", ""),
    ("context_is_admin", "role:admin"),
    ("service_api", "role:service or role:admin"),
    // Images.
    ("add_image", CREATE_IMAGE),
    ("delete_image", ADMIN_OR_PROJECT_MEMBER),
    ("get_image", GET_IMAGE),
    ("get_images", ADMIN_OR_PROJECT_READER),
    ("modify_image", ADMIN_OR_PROJECT_MEMBER),
    ("publicize_image", ADMIN),
    ("communitize_image", ADMIN_OR_PROJECT_MEMBER),
    ("download_image", DOWNLOAD_IMAGE),
    ("download_from_store", DOWNLOAD_IMAGE),
    ("upload_image", ADMIN_OR_PROJECT_MEMBER),
    ("deactivate", ADMIN_OR_PROJECT_MEMBER),
    ("reactivate", ADMIN_OR_PROJECT_MEMBER),
    ("copy_image", ADMIN),
    ("delete_image_location", ADMIN),
    ("get_image_location", ADMIN_OR_PROJECT_READER),
    ("set_image_location", ADMIN_OR_PROJECT_MEMBER),
    ("add_image_location", SERVICE_OR_PROJECT_MEMBER),
    ("fetch_image_location", "rule:service_api"),
    // Members.
    ("add_member", ADMIN_OR_PROJECT_MEMBER),
    ("delete_member", ADMIN_OR_PROJECT_MEMBER),
    ("get_member", ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER),
    ("get_members", ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER),
    ("modify_member", ADMIN_OR_SHARED_MEMBER),
    // The cache API (`manage_image_cache` is the rule older policy files refer to).
    ("manage_image_cache", ADMIN),
    ("cache_image", ADMIN),
    ("cache_list", ADMIN),
    ("cache_delete", ADMIN),
    ("cache_clean", ADMIN),
    ("cache_prune", ADMIN),
    ("list_cached_nodes", ADMIN),
    // Tasks: the whole API is behind tasks_api_access.
    ("get_task", "rule:default"),
    ("get_tasks", "rule:default"),
    ("add_task", "rule:default"),
    ("modify_task", "rule:default"),
    ("tasks_api_access", ADMIN),
    // Discovery.
    ("stores_info_detail", "rule:context_is_admin or rule:service_api"),
    // Metadata definitions.
    ("metadef_default", ""),
    ("metadef_admin", ADMIN),
    ("get_metadef_namespace", GET_NAMESPACE),
    ("get_metadef_namespaces", ADMIN_OR_PROJECT_READER),
    ("modify_metadef_namespace", METADEF_ADMIN),
    ("add_metadef_namespace", METADEF_ADMIN),
    ("delete_metadef_namespace", METADEF_ADMIN),
    ("get_metadef_object", GET_NAMESPACE),
    ("get_metadef_objects", GET_NAMESPACE),
    ("modify_metadef_object", METADEF_ADMIN),
    ("add_metadef_object", METADEF_ADMIN),
    ("delete_metadef_object", METADEF_ADMIN),
    ("list_metadef_resource_types", GET_NAMESPACE),
    ("get_metadef_resource_type", GET_NAMESPACE),
    ("add_metadef_resource_type_association", METADEF_ADMIN),
    ("remove_metadef_resource_type_association", METADEF_ADMIN),
    ("get_metadef_property", GET_NAMESPACE),
    ("get_metadef_properties", GET_NAMESPACE),
    ("modify_metadef_property", METADEF_ADMIN),
    ("add_metadef_property", METADEF_ADMIN),
    ("remove_metadef_property", METADEF_ADMIN),
    ("get_metadef_tag", GET_NAMESPACE),
    ("get_metadef_tags", GET_NAMESPACE),
    ("modify_metadef_tag", METADEF_ADMIN),
    ("add_metadef_tag", METADEF_ADMIN),
    ("add_metadef_tags", METADEF_ADMIN),
    ("delete_metadef_tag", METADEF_ADMIN),
    ("delete_metadef_tags", METADEF_ADMIN),
];
