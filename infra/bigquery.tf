# The warehouse: tables from the same schema files the code writes with
# (shared/bigquery/tables/<table>.json, read by shared/warehouse.py) and
# views from the same SQL files (shared/bigquery/views/<view>.sql). A file
# added there is deployed by the next apply.

locals {
  tables_dir = "${local.repo_root}/shared/bigquery/tables"
  views_dir  = "${local.repo_root}/shared/bigquery/views"

  tables = {
    for f in fileset(local.tables_dir, "*.json") :
    trimsuffix(f, ".json") => jsondecode(file("${local.tables_dir}/${f}"))
  }

  # The SQL names tables as `{dataset}.table`, as the local stack does.
  views = {
    for f in fileset(local.views_dir, "*.sql") :
    trimsuffix(f, ".sql") => replace(
      file("${local.views_dir}/${f}"), "{dataset}",
      "${var.project_id}.${var.bigquery.dataset_id}",
    )
  }

  day_ms = 86400000
}

resource "google_bigquery_dataset" "warehouse" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption; a customer-managed key is an option the deployer adds, not a default this product can create.
  dataset_id  = var.bigquery.dataset_id
  location    = coalesce(var.bigquery.location, var.region)
  description = "Call tracking: sessions, holds, calls and the views over them."
  labels      = var.labels

  delete_contents_on_destroy = !var.deletion_protection

  depends_on = [google_project_service.enabled]
}

resource "google_bigquery_table" "table" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption, as for the dataset (CKV_GCP_81).
  for_each = local.tables

  dataset_id          = google_bigquery_dataset.warehouse.dataset_id
  table_id            = each.key
  description         = each.value.description
  schema              = jsonencode(each.value.fields)
  clustering          = try(each.value.clustering, null)
  deletion_protection = var.deletion_protection
  labels              = var.labels

  dynamic "time_partitioning" {
    for_each = (
      try(each.value.partitioning, null) == null
      ? [] : [each.value.partitioning]
    )
    content {
      type  = "DAY"
      field = time_partitioning.value.field
      # Personal data leaves with its partition (shared/warehouse.py does
      # the same locally).
      expiration_ms = (
        try(time_partitioning.value.expiration_days, null) == null
        ? null : time_partitioning.value.expiration_days * local.day_ms
      )
    }
  }
}

resource "google_bigquery_table" "view" {
  #checkov:skip=CKV_GCP_80:A view stores no data to encrypt.
  #checkov:skip=CKV_GCP_121:A view stores no data, and removing its SQL file must be able to drop it.
  for_each = local.views

  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  table_id   = each.key
  labels     = var.labels
  # A view holds no data; replacing it loses nothing.
  deletion_protection = false

  view {
    query          = each.value
    use_legacy_sql = false
  }

  lifecycle {
    precondition {
      condition     = !contains(keys(local.tables), each.key)
      error_message = "Expected view ${each.key} not to share its name with a table in shared/bigquery/tables."
    }
  }

  # Note: BigQuery checks a view's query when it is created, so a view over
  # another view can fail on the first apply; a second apply creates it.
  depends_on = [google_bigquery_table.table]
}
