//! SeaORM entities: the storage shape of Glance's tables, nothing more.

pub mod cache_queue;
pub mod cached_image;
pub mod image;
pub mod image_location;
pub mod image_member;
pub mod image_property;
pub mod image_tag;
pub mod metadef_namespace;
pub mod metadef_namespace_resource_type;
pub mod metadef_object;
pub mod metadef_property;
pub mod metadef_resource_type;
pub mod metadef_tag;
pub mod node_reference;
pub mod task;
pub mod task_info;
