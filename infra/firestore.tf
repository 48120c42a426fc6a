# The Firestore database, the composite indexes the code's queries need,
# time-to-live policies, and the site documents declared in var.sites.

locals {
  # One entry per composite index, named for the query it serves.
  # tests/test_infra.py finds every query in the code and fails when none of
  # these serves it. Equality fields first, then the range or order field.
  firestore_indexes = {
    # shared/store.py free_numbers: a site's free dynamic numbers, least
    # recently released first.
    numbers_free = {
      collection = "numbers"
      fields = [
        { path = "site_id", order = "ASCENDING" },
        { path = "kind", order = "ASCENDING" },
        { path = "overflow", order = "ASCENDING" },
        { path = "available_at", order = "ASCENDING" },
      ]
    }
    # shared/store.py overflow_numbers: shared overflow numbers, least
    # recently used first.
    numbers_overflow = {
      collection = "numbers"
      fields = [
        { path = "site_id", order = "ASCENDING" },
        { path = "kind", order = "ASCENDING" },
        { path = "overflow", order = "ASCENDING" },
        { path = "last_used_at", order = "ASCENDING" },
      ]
    }
    # shared/stitch_store.py holds: a site's holds of the called number
    # that began before the call, latest first.
    holds_by_number = {
      collection = "holds"
      fields = [
        { path = "site_id", order = "ASCENDING" },
        { path = "number", order = "ASCENDING" },
        { path = "from", order = "DESCENDING" },
      ]
    }
  }

  # Firestore deletes a document of these collections some time (usually
  # within a day) after its expires_at. The field is exempt from indexing:
  # nothing queries it, and an index on an ever-increasing timestamp limits
  # write rates.
  # "raw" is the sub-collection calls/{call}/raw: a TTL policy applies to a
  # collection group, so it is named alone.
  ttl_collections = [
    "sessions", "holds", "visitors", "calls", "raw", "stitched_calls", "callers",
    "ga4_sent", "crm_leads", "crm_callers", "crm_links",
  ]
  ttl_field = "expires_at"
}

resource "google_firestore_database" "main" {
  # The code uses the default database (shared/clients.py).
  name        = "(default)"
  location_id = coalesce(var.firestore_location, var.region)
  type        = "FIRESTORE_NATIVE"

  concurrency_mode                  = "PESSIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"

  delete_protection_state = (
    var.deletion_protection
    ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  )
  deletion_policy = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.enabled]
}

resource "google_firestore_index" "composite" {
  for_each = local.firestore_indexes

  database    = google_firestore_database.main.name
  collection  = each.value.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.path
      order      = fields.value.order
    }
  }
}

resource "google_firestore_field" "ttl" {
  for_each = toset(local.ttl_collections)

  database   = google_firestore_database.main.name
  collection = each.key
  field      = local.ttl_field

  ttl_config {}

  # An empty block turns off the field's single-field indexes.
  index_config {}
}

# --- Sites -------------------------------------------------------------------

locals {
  site_text_fields = [
    "default_number", "region", "timezone", "currency", "display_format",
    "overflow_policy",
  ]
  site_integer_fields = ["lease_s", "renew_s", "cooldown_s"]
  empty_array         = "{\"arrayValue\": {}}"

  # Firestore's typed JSON of each site, leaving out what var.sites leaves
  # unset so that shared/sites.py's defaults apply. A list goes through
  # jsondecode(...) so that an empty one can take the shape Firestore
  # gives it back ({"arrayValue": {}}), and an `if` skips what is unset.
  site_fields = {
    for id, s in var.sites : id => jsonencode(merge(
      { site_id = { stringValue = id } },
      {
        for k in local.site_text_fields :
        k => { stringValue = s[k] } if s[k] != null
      },
      {
        for k in local.site_integer_fields :
        k => { integerValue = tostring(s[k]) } if s[k] != null
      },
      {
        allowed_origins = {
          arrayValue = {
            values = [for o in s.allowed_origins : { stringValue = o }]
          }
        }
      },
      {
        for k, rule in { dynamic_rule = s.dynamic_rule } : k => {
          mapValue = {
            fields = merge(
              {
                for rk in ["mediums", "sources"] : rk => jsondecode(
                  length(rule[rk]) == 0 ? local.empty_array : jsonencode({
                    arrayValue = {
                      values = [for v in rule[rk] : { stringValue = v }]
                    }
                  })
                ) if rule[rk] != null
              },
              {
                for rk in ["click_ids", "everyone"] :
                rk => { booleanValue = rule[rk] } if rule[rk] != null
              },
            )
          }
        } if rule != null
      },
      {
        for k, routes in { static_routes = s.static_routes } : k => {
          arrayValue = {
            values = [
              for r in routes : {
                mapValue = {
                  fields = {
                    for rk in ["number", "source", "medium"] :
                    rk => { stringValue = r[rk] } if r[rk] != null
                  }
                }
              }
            ]
          }
        } if length(routes) > 0
      },
    ))
  }
}

resource "google_firestore_document" "site" {
  for_each = local.site_fields

  database    = google_firestore_database.main.name
  collection  = "sites"
  document_id = each.key
  fields      = each.value
}
