//! PersistentVolumeClaims: a new claim that names no class gets the default one (the
//! DefaultStorageClass admission plugin, `storageclass`).

use super::{AfterFieldManager, AsyncHook, Strategy};
use crate::handlers::Ctx;
use crate::storageclass;
use serde_json::Value;

pub struct PersistentVolumeClaim;

impl Strategy for PersistentVolumeClaim {
    fn admit_create<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        claim: &'a mut Value,
    ) -> AsyncHook<'a, Option<AfterFieldManager>> {
        Some(Box::pin(async move {
            storageclass::default_class(ctx.server, claim).await?;
            Ok(None)
        }))
    }
}
