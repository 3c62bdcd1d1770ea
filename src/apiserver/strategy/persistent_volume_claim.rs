//! PersistentVolumeClaims: a new claim that names no class gets the default one (the
//! DefaultStorageClass admission plugin, `storageclass`), and every claim written must
//! fit its namespace's LimitRanges (the LimitRanger).

use super::{AfterFieldManager, AsyncHook, Strategy};
use crate::admission::limitranger;
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
            limitranger::admit_claim(ctx.server, claim).await?;
            Ok(None)
        }))
    }

    fn admit_update<'a>(&'a self, ctx: &'a Ctx<'a>, claim: &'a Value) -> AsyncHook<'a, ()> {
        Some(Box::pin(limitranger::admit_claim(ctx.server, claim)))
    }
}
