//! GET of one object (and of its `status` subresource, which shows the whole object).

use super::{Ctx, answer_with, read};
use crate::Json;
use http::StatusCode;
use rind_api::status::ApiError;

pub async fn get(ctx: &Ctx<'_>, name: &str) -> Result<Json, ApiError> {
    let (_, object) = read(ctx.server, ctx.resource, &ctx.key(name), name).await?;
    Ok(answer_with(ctx, StatusCode::OK, object))
}
