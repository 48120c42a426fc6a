# Topics of functions/manifest.json, each with a dead-letter topic and a
# pull subscription on it for replay (`python -m ops replay --topic T`), and
# one push subscription per event function. The local stack
# (devstack/stack.py) builds the same shape on the emulator.

locals {
  topics = toset(local.manifest.topics)

  # Five attempts, the fewest Pub/Sub allows, then the dead-letter topic.
  max_delivery_attempts = 5
  # A message no function took within a week is a bug to look at, not to
  # retry; dead letters are kept as long for replay.
  retention = "604800s"
}

resource "google_pubsub_topic" "topic" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption for events kept at most 7 days; a customer-managed key is the deployer's choice, not a default this product can create.
  for_each = local.topics

  name                       = each.key
  message_retention_duration = local.retention
  labels                     = var.labels

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:As for the source topics: Google-managed encryption.
  for_each = local.topics

  name                       = "${each.key}-dead-letter"
  message_retention_duration = local.retention
  labels                     = var.labels

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.topics

  name                       = "${each.key}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = local.retention
  labels                     = var.labels

  expiration_policy {
    ttl = "" # never expires, however long no one replays
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = local.pubsub_functions

  name  = each.key
  topic = google_pubsub_topic.topic[each.value.topic].id
  # Not redelivered while the function may still be working on it.
  ack_deadline_seconds       = min(600, max(10, each.value.size.timeout_s))
  message_retention_duration = local.retention
  labels                     = var.labels

  push_config {
    # The path names the topic, so functions-framework fills the CloudEvent
    # source as it does locally.
    push_endpoint = join("", [
      local.function_urls[each.key],
      "/projects/", var.project_id, "/topics/", each.value.topic,
    ])

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.function_urls[each.key]
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.value.topic].id
    max_delivery_attempts = local.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "1s"
    maximum_backoff = "10s"
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.push,
    google_service_account_iam_member.pubsub_agent_token,
  ]
}
