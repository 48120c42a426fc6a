# Every function in functions/manifest.json, deployed as a Cloud Function
# (2nd gen, Python 3.12). A function added to the manifest is deployed by
# the next apply with no change here; what it may touch is in iam.tf.
#
# Source archives: one per function, holding functions/<name>/ at the root
# (so main.py is there), the whole shared/ package beside it and the
# repository's requirements.txt. Only main.py differs between archives.
# Why not trim shared/ to the modules a function imports: Python loads only
# what main.py imports, so modules on disk that nobody imports cost no cold
# start time; what does cost it is importing the client libraries, which the
# code defers until first use. The one requirements.txt does install every
# client library into every function's image. That makes images larger (a
# slower first build, not a slower cold start: Cloud Run streams the image)
# and keeps one tested set of versions. The effect of one shared package: a
# change in shared/ rebuilds every function, which is right, since any of
# them may import the changed module.
#
# Each archive is named by its MD5, so an apply redeploys exactly the
# functions whose files changed.

locals {
  repo_root = "${path.module}/.."
  manifest  = jsondecode(file("${local.repo_root}/functions/manifest.json"))

  function_defaults = {
    concurrency   = 8
    cpu           = "1"
    max_instances = 20
    memory        = "512Mi"
    min_instances = 0
    timeout_s     = 60
  }

  functions = {
    for name, fn in local.manifest.functions : name => {
      entry_point = fn.entry_point
      trigger     = fn.trigger
      topic       = try(fn.topic, null)
      public      = try(fn.public, false)
      publishes   = try(fn.publishes, [])
      description = try(fn.description, "")
      # Cloud Run services and service accounts take no underscores.
      service = replace(name, "_", "-")
      size = merge(local.function_defaults, {
        for k, v in try(var.functions[name], {}) : k => v if v != null
      })
    }
  }

  http_functions = {
    for k, v in local.functions : k => v if v.trigger == "http"
  }
  pubsub_functions = {
    for k, v in local.functions : k => v if v.trigger == "pubsub"
  }

  # Text files only: archive_file takes file() contents, which must be UTF-8.
  source_pattern = "**/*.{py,json,sql,toml,txt}"
  shared_files   = fileset("${local.repo_root}/shared", local.source_pattern)

  function_env = merge(var.settings, {
    CALLTRACK_BACKEND            = "gcp"
    GOOGLE_CLOUD_PROJECT         = var.project_id
    CALLTRACK_DATASET            = google_bigquery_dataset.warehouse.dataset_id
    CALLTRACK_LOG_LEVEL          = var.log_level
    CALLTRACK_RECORDING_READERS  = jsonencode(var.recording_readers.members)
    CALLTRACK_RECORDING_AUDIENCE = var.recording_readers.audience
  })
}

# Manifest mistakes fail the plan with a message, not a lookup error.
resource "terraform_data" "manifest" {
  input = keys(local.functions)

  lifecycle {
    precondition {
      condition = alltrue([
        for fn in values(local.functions) :
        contains(["http", "pubsub"], fn.trigger)
      ])
      error_message = "Expected every trigger in functions/manifest.json to be \"http\" or \"pubsub\"."
    }
    precondition {
      condition = alltrue([
        for fn in values(local.pubsub_functions) :
        contains(local.manifest.topics, coalesce(fn.topic, "-"))
      ])
      error_message = "Expected every pubsub function's topic in functions/manifest.json to be listed under \"topics\"."
    }
    precondition {
      condition = alltrue(flatten([
        for fn in values(local.functions) : [
          for t in fn.publishes : contains(local.manifest.topics, t)
        ]
      ]))
      error_message = "Expected every topic under a function's \"publishes\" in functions/manifest.json to be listed under \"topics\"."
    }
    precondition {
      condition = alltrue([
        for name in keys(local.functions) :
        fileexists("${local.repo_root}/functions/${name}/main.py")
      ])
      error_message = "Expected functions/<name>/main.py for every function in functions/manifest.json."
    }
    precondition {
      condition = alltrue([
        for name in keys(var.functions) : contains(keys(local.functions), name)
      ])
      error_message = "Expected every key of var.functions to name a function in functions/manifest.json."
    }
  }
}

data "archive_file" "source" {
  for_each = local.functions

  type             = "zip"
  output_path      = "${path.module}/.build/${each.key}.zip"
  output_file_mode = "0644"

  dynamic "source" {
    for_each = fileset(
      "${local.repo_root}/functions/${each.key}", local.source_pattern
    )
    content {
      filename = source.value
      content = file(
        "${local.repo_root}/functions/${each.key}/${source.value}"
      )
    }
  }
  source {
    filename = "requirements.txt"
    content  = file("${local.repo_root}/requirements.txt")
  }
  dynamic "source" {
    for_each = local.shared_files
    content {
      filename = "shared/${source.value}"
      content  = file("${local.repo_root}/shared/${source.value}")
    }
  }
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Build inputs only; Cloud Audit Logs record access, and a usage-log bucket would need its own logging.
  name     = "${var.project_id}-calltrack-sources"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  versioning {
    enabled = true
  }

  # Archives are content-addressed, so old ones are only rollback material.
  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket_object" "source" {
  for_each = local.functions

  name = join("", [
    "functions/", each.key, "-",
    data.archive_file.source[each.key].output_md5, ".zip",
  ])
  bucket = google_storage_bucket.sources.name
  source = data.archive_file.source[each.key].output_path
}

resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Images hold the function code and pinned open-source packages, no customer data; Google-managed encryption is enough.
  repository_id = "calltrack-functions"
  location      = var.region
  format        = "DOCKER"
  description   = "Images that Cloud Functions builds from the source archives."

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s" # 30 days
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_cloudfunctions2_function" "function" {
  for_each = local.functions

  name        = each.value.service
  location    = var.region
  description = each.value.description

  build_config {
    runtime           = "python312"
    entry_point       = each.value.entry_point
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    available_memory                 = each.value.size.memory
    available_cpu                    = each.value.size.cpu
    max_instance_request_concurrency = each.value.size.concurrency
    min_instance_count               = each.value.size.min_instances
    max_instance_count               = each.value.size.max_instances
    timeout_seconds                  = each.value.size.timeout_s
    service_account_email = (
      google_service_account.function[each.key].email
    )
    all_traffic_on_latest_revision = true
    environment_variables          = local.function_env

    # HTTP functions take calls from pages and providers; the others only
    # from Pub/Sub push, which counts as internal traffic.
    ingress_settings = (
      each.value.trigger == "http" ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    )

    dynamic "secret_environment_variables" {
      for_each = toset(local.access[each.key].secrets)
      iterator = env
      content {
        key        = env.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.setting[env.value].secret_id
        # Resolved when an instance starts; see docs/deploy.md, "Rotating
        # secrets".
        version = "latest"
      }
    }
  }

  labels = var.labels

  depends_on = [
    terraform_data.manifest,
    google_project_iam_member.build,
    google_artifact_registry_repository_iam_member.build,
    google_storage_bucket_iam_member.build_sources,
    google_secret_manager_secret_iam_member.function,
    google_secret_manager_secret_version.placeholder,
  ]
}
