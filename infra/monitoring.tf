# Log-based metrics over the functions' JSON log lines (shared/log.py puts
# a line's "fields" into jsonPayload) and the alert policies on them. The
# events each metric counts, and who logs them, are listed in
# docs/deploy.md, "Alerts".

locals {
  run_logs = "resource.type=\"cloud_run_revision\""
  event    = "${local.run_logs} AND jsonPayload.event"

  # Counters: one per event, labelled by the fields worth grouping by.
  log_counters = {
    pool_exhausted = {
      description = "Assignments that found no free number in a site's pool."
      filter      = "${local.event}=\"pool_exhausted\""
      labels      = { site_id = "EXTRACT(jsonPayload.site_id)" }
    }
    export_rejected = {
      description = "Conversions an ad or analytics platform refused on export."
      filter      = "${local.event}=\"export_rejected\""
      labels = {
        site_id  = "EXTRACT(jsonPayload.site_id)"
        platform = "EXTRACT(jsonPayload.platform)"
      }
    }
    quality_breach = {
      description = "Quality checks that missed their target."
      filter      = "${local.event}=\"quality_breach\""
      labels = {
        site_id = "EXTRACT(jsonPayload.site_id)"
        check   = "EXTRACT(jsonPayload.check)"
      }
    }
    # shared/web.py logs every refused request with its status; a webhook
    # answers 401 for a missing or wrong signature.
    webhook_unauthorized = {
      description = "Webhook calls refused for a missing or wrong signature."
      filter = join(" AND ", [
        local.run_logs,
        "resource.labels.service_name=~\"-webhook$\"",
        "jsonPayload.status=401",
      ])
      labels = { service = "EXTRACT(resource.labels.service_name)" }
    }
  }

  channels = concat(
    var.alerts.notification_channels,
    [for c in google_monitoring_notification_channel.email : c.id],
  )

  user_metrics = {
    for k, m in merge(google_logging_metric.counter, {
      pool_utilisation = google_logging_metric.pool_utilisation
    }) : k => "logging.googleapis.com/user/${m.name}"
  }

  alert_policies = {
    pool_exhausted = {
      name      = "Number pool exhausted"
      metric    = local.user_metrics.pool_exhausted
      aligner   = "ALIGN_SUM"
      group_by  = ["metric.label.site_id"]
      threshold = 0
      period    = "300s"
      doc       = <<-EOT
        Visitors of a site were shown the default (or a shared) number
        because every pool number was held or cooling; their calls cannot
        be attributed. Add numbers (`python -m ops numbers-import`) or
        shorten the site's cooldown_s.
      EOT
    }
    pool_utilisation = {
      name      = "Number pool over ${var.alerts.pool_utilisation * 100}% in use"
      metric    = local.user_metrics.pool_utilisation
      aligner   = "ALIGN_PERCENTILE_99"
      group_by  = ["metric.label.site_id"]
      threshold = var.alerts.pool_utilisation
      period    = "3600s"
      doc       = <<-EOT
        A site's pool is close to exhaustion (`python -m ops pool-status
        --site SITE`). Add numbers before visitors get the default number.
      EOT
    }
    dead_letters = {
      name      = "Messages dead-lettered"
      metric    = "pubsub.googleapis.com/subscription/dead_letter_message_count"
      aligner   = "ALIGN_DELTA"
      group_by  = ["resource.label.subscription_id"]
      threshold = 0
      period    = "300s"
      doc       = <<-EOT
        A function failed a message ${local.max_delivery_attempts} times and
        Pub/Sub moved it to the topic's dead-letter subscription. Read the
        function's errors, fix the cause, then
        `python -m ops replay --topic TOPIC`.
      EOT
    }
    export_rejected = {
      name      = "Conversion exports rejected"
      metric    = local.user_metrics.export_rejected
      aligner   = "ALIGN_SUM"
      group_by  = ["metric.label.platform", "metric.label.site_id"]
      threshold = 0
      period    = "3600s"
      doc       = <<-EOT
        A platform refused conversions. The log line's `reason` says why
        (expired click id, unknown conversion action, credentials).
      EOT
    }
    quality_breach = {
      name      = "Quality target breached"
      metric    = local.user_metrics.quality_breach
      aligner   = "ALIGN_SUM"
      group_by  = ["metric.label.check", "metric.label.site_id"]
      threshold = 0
      period    = "3600s"
      doc       = <<-EOT
        The quality report found a check below its target; the log line
        carries the measured value and the target.
      EOT
    }
    webhook_unauthorized = {
      name      = "Webhook signature failures spiking"
      metric    = local.user_metrics.webhook_unauthorized
      aligner   = "ALIGN_SUM"
      group_by  = ["metric.label.service"]
      threshold = var.alerts.signature_failures
      period    = "300s"
      doc       = <<-EOT
        Many webhook calls carried a missing or wrong signature: a rotated
        provider secret not yet in Secret Manager, or someone probing the
        URL. See docs/deploy.md, "Rotating secrets".
      EOT
    }
  }
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alerts.emails)

  display_name = "calltrack: ${each.key}"
  type         = "email"
  labels       = { email_address = each.key }

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "counter" {
  for_each = local.log_counters

  name        = "calltrack/${each.key}"
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  label_extractors = each.value.labels

  depends_on = [google_project_service.enabled]
}

# The share of a site's dynamic numbers in use, from the pool_status lines
# (event "pool_status", fields site_id and utilisation from 0 to 1).
resource "google_logging_metric" "pool_utilisation" {
  name        = "calltrack/pool_utilisation"
  description = "Share of a site's dynamic numbers held or cooling."
  filter      = "${local.run_logs} AND jsonPayload.event=\"pool_status\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"

    labels {
      key        = "site_id"
      value_type = "STRING"
    }
  }

  value_extractor  = "EXTRACT(jsonPayload.utilisation)"
  label_extractors = { site_id = "EXTRACT(jsonPayload.site_id)" }

  bucket_options {
    linear_buckets {
      num_finite_buckets = 20
      width              = 0.05
      offset             = 0
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "alert" {
  for_each = local.alert_policies

  display_name          = "calltrack: ${each.value.name}"
  combiner              = "OR"
  notification_channels = local.channels
  user_labels           = var.labels

  conditions {
    display_name = each.value.name

    condition_threshold {
      filter          = "metric.type=\"${each.value.metric}\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"

      aggregations {
        alignment_period   = each.value.period
        per_series_aligner = each.value.aligner
        cross_series_reducer = (
          each.value.aligner == "ALIGN_PERCENTILE_99"
          ? "REDUCE_MAX" : "REDUCE_SUM"
        )
        group_by_fields = each.value.group_by
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    content   = each.value.doc
    mime_type = "text/markdown"
  }
}
