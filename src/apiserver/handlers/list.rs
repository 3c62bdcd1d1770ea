//! LIST: the label and field selectors, the paged walk over the store (which the raw
//! list path and watches share) and the list answer in each rendering.

use super::continue_token::{decode_continue, encode_continue};
use super::{Ctx, decode_as, store_error};
use crate::request::{Query, Rendering};
use crate::{Json, Server};
use rind_api::meta;
use rind_api::registry::Resource;
use rind_api::selector::{FieldSelector, LabelSelector};
use rind_api::status::ApiError;
use rind_api::table::{IncludeObject, partial_metadata, table};
use rind_store::{KeyValue, StoreError};
use serde_json::{Value, json};

/// The label and field selectors of a list or watch.
pub struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub fn from_query(resource: &Resource, query: &Query) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(query.raw("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(
            query.raw("fieldSelector").unwrap_or_default(),
            &resource.field_label_rules(),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Filter { labels, fields })
    }

    /// Narrows a watch of one named object (`/watch/pods/NAME`, `/pods/NAME?watch=1`)
    /// to it, as upstream's handler does: a field selector of the request's own must
    /// require that very name.
    pub fn select_name(&mut self, name: &str) -> Result<(), ApiError> {
        if self.fields.is_empty() {
            self.fields = FieldSelector::exact("metadata.name", name);
            return Ok(());
        }
        if self.fields.requires_exact("metadata.name") != Some(name) {
            return Err(ApiError::bad_request(
                "fieldSelector metadata.name doesn't match requested name",
            ));
        }
        Ok(())
    }

    /// True for the filter without selectors.
    pub fn selects_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(meta::labels(object)) && self.fields.matches(object)
    }

    /// The top-level fields of an object (`metadata`, `spec`, …) `matches` looks at.
    pub fn top_level_fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = self
            .fields
            .paths()
            .map(|path| path.split('.').next().unwrap_or(path))
            .collect();
        if !self.labels.is_empty() {
            fields.push("metadata");
        }
        fields.sort_unstable();
        fields.dedup();
        fields
    }
}

/// Where a list stopped early because of its `limit`.
pub struct Continue {
    /// The `continue` token of the next page.
    pub token: String,
    /// Keys after this page, matching or not: the list's `remainingItemCount` when it
    /// has no selectors (upstream leaves it out otherwise, as it would be wrong).
    pub remaining: usize,
}

impl Continue {
    /// The list's `metadata` for this page: resourceVersion, and continue and
    /// remainingItemCount when there is more.
    pub fn list_meta(next: Option<&Continue>, revision: i64, filter: &Filter) -> Value {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if let Some(next) = next {
            meta["continue"] = json!(next.token);
            if filter.selects_everything() {
                meta["remainingItemCount"] = json!(next.remaining);
            }
        }
        meta
    }
}

/// Matching objects, at most `limit` (0 = all), plus the list's revision and where it
/// stopped.
pub async fn collect(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    filter: &Filter,
    limit: usize,
    query: &Query,
) -> Result<(Vec<Value>, i64, Option<Continue>), ApiError> {
    let mut items = Vec::new();
    let (revision, next) = scan(server, resource, ns, limit, query, |kv| {
        let object = decode_as(resource, kv)?;
        let keep = filter.matches(&object);
        if keep {
            items.push(object);
        }
        Ok(keep)
    })
    .await?;
    Ok((items, revision, next))
}

/// Walks the keys a list covers (from `continue` or the start, at the revision the
/// query asks for), page by page, handing each to `accept`, which says whether it
/// counted towards `limit`. Returns the list's revision and, when `limit` stopped it
/// early, where.
pub async fn scan(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    limit: usize,
    query: &Query,
    mut accept: impl FnMut(&KeyValue) -> Result<bool, ApiError>,
) -> Result<(i64, Option<Continue>), ApiError> {
    let prefix = resource.prefix(ns);
    let (mut start_after, mut revision) = match query.get("continue") {
        Some(token) => {
            let token = decode_continue(token)?;
            if !token.start.starts_with(&prefix) {
                return Err(ApiError::bad_request(
                    "continue key is not valid for this list",
                ));
            }
            // -1 is the token an expired page hands out: go on at the latest revision.
            let revision = (token.rv >= 0).then_some(token.rv);
            (Some(token.start), revision)
        }
        None => {
            let exact = query.get("resourceVersionMatch") == Some("Exact");
            let rv = rind_api::query::parse_resource_version(
                query.get("resourceVersion").unwrap_or_default(),
            )
            .map_err(|e| ApiError::bad_request(format!("invalid resource version: {e}")))?;
            // Past i64 no store revision can reach: the store says it is in the future.
            let rv = i64::try_from(rv).unwrap_or(i64::MAX);
            (None, exact.then_some(rv))
        }
    };
    let mut accepted = 0;
    loop {
        // Ask for a little more than the remainder so filtering rarely needs a second page.
        let want = if limit == 0 {
            0
        } else {
            (limit - accepted).max(1) + 1
        };
        let page = server
            .store
            .list(&prefix, start_after.as_deref(), want, revision)
            .await
            .map_err(|e| match (e, &start_after) {
                // Upstream's etcd store: a compacted page of a paged list comes with a
                // token that goes on at the latest revision; a compacted list at a
                // resourceVersion is just too old.
                (StoreError::Compacted { .. }, Some(start)) => {
                    ApiError::expired_continue(encode_continue(-1, start))
                }
                (StoreError::Compacted { .. }, None) => {
                    ApiError::expired("The resourceVersion for the provided list is too old.")
                }
                (other, _) => store_error(other, resource, ""),
            })?;
        revision = Some(page.revision);
        let count = page.items.len();
        for (i, kv) in page.items.iter().enumerate() {
            if accept(kv)? {
                accepted += 1;
            }
            if limit != 0 && accepted >= limit {
                let next = (i + 1 < count || page.more).then(|| Continue {
                    token: encode_continue(page.revision, &kv.key),
                    remaining: page.count.saturating_sub(i + 1),
                });
                return Ok((page.revision, next));
            }
        }
        if !page.more || count == 0 {
            return Ok((page.revision, None));
        }
        start_after = page.items.last().map(|kv| kv.key.clone());
    }
}

pub async fn list(ctx: &Ctx<'_>) -> Result<Json, ApiError> {
    let &Ctx {
        server,
        resource,
        namespace,
        rendering,
        query,
        ..
    } = ctx;
    let limit = query.int("limit")?.unwrap_or(0).max(0) as usize;
    crate::request::check_list_options(query, false)?;
    let filter = Filter::from_query(resource, query)?;
    if crate::raw_list::applies(resource, rendering, query) {
        return crate::raw_list::list(ctx, &filter, limit).await;
    }
    let (items, revision, next) =
        collect(server, resource, namespace, &filter, limit, query).await?;
    let list_meta = Continue::list_meta(next.as_ref(), revision, &filter);
    let body = match rendering {
        Rendering::Table => table(
            resource,
            &items,
            list_meta,
            IncludeObject::parse(query.get("includeObject")),
        ),
        Rendering::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        Rendering::Object => json!({
            "kind": resource.list_kind(),
            "apiVersion": resource.api_version(),
            "metadata": list_meta,
            "items": items,
        }),
    };
    Ok(Json::ok(body, rendering))
}
