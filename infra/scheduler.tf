# Ticks that start the periodic work: conversion exports, the quality
# report and the pool watch. Each publishes one message to its topic, whose function (from the
# manifest) does the work. A tick whose topic is not in the manifest yet is
# not created.

locals {
  ticks = {
    for topic, cron in {
      "exports-tick" = var.schedules.exports
      "quality-tick" = var.schedules.quality
      "pool-tick"    = var.schedules.pool
    } : topic => cron if contains(local.manifest.topics, topic)
  }
}

resource "google_cloud_scheduler_job" "tick" {
  for_each = local.ticks

  name        = each.key
  region      = var.region
  description = "Publishes a tick to ${each.key} on schedule."
  schedule    = each.value
  time_zone   = var.schedules.time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.topic[each.key].id
    # The message: {"tick": "<topic>"} with the attribute type=tick.
    data       = base64encode(jsonencode({ tick = each.key }))
    attributes = { type = "tick" }
  }

  retry_config {
    retry_count          = 3
    min_backoff_duration = "10s"
    max_backoff_duration = "300s"
  }

  depends_on = [google_project_service.enabled]
}
