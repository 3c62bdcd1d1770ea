//! PriorityClasses: at most one may be the global default (`priority`), checked on
//! every write that could make a second one.

use super::{AfterFieldManager, AsyncHook, Strategy};
use crate::handlers::Ctx;
use crate::priority;
use serde_json::Value;

pub struct PriorityClass;

impl Strategy for PriorityClass {
    fn admit_create<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        class: &'a mut Value,
    ) -> AsyncHook<'a, Option<AfterFieldManager>> {
        Some(Box::pin(async move {
            priority::check_single_default(ctx.server, ctx.resource, class).await?;
            Ok(None)
        }))
    }

    fn admit_update<'a>(&'a self, ctx: &'a Ctx<'a>, class: &'a Value) -> AsyncHook<'a, ()> {
        Some(Box::pin(priority::check_single_default(
            ctx.server,
            ctx.resource,
            class,
        )))
    }
}
