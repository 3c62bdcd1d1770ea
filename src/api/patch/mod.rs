//! The patch kinds of the API: strategic merge patch (`strategic`), server-side apply
//! with field ownership (`apply`, `fields`), both driven by the shape of the built-in
//! types (`schema`: which lists are merged by key, which are sets, which are atomic).

pub mod apply;
pub mod fields;
pub mod schema;
mod schema_table;
pub mod strategic;

pub use schema::Node;
