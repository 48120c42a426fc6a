# Service accounts and their grants. Every grant here is additive
# (*_iam_member): it adds one member to one role and leaves grants made
# elsewhere alone.

locals {
  # What each function's code touches. tests/test_infra.py reads the code
  # each function imports and fails when a function lacks a grant its code
  # needs, or holds one its code never uses. A function of the manifest not
  # listed here gets no data access. Topics it publishes to come from the
  # manifest's "publishes".
  #   firestore      roles/datastore.user on the project (Firestore has no
  #                  finer grant than the database)
  #   bigquery_write rows into the dataset's tables
  #   bigquery_query query jobs reading the dataset
  #   secrets        settings read from Secret Manager (secrets.tf)
  function_access = {
    assign = {
      firestore = true
    }
    record_sessions = {
      bigquery_write = true
    }
    call_webhook = {
      firestore = true
      secrets   = ["CALLTRACK_PROVIDER_SECRETS"]
    }
    stitch = {
      firestore      = true
      bigquery_write = true
    }
    ga4_send = {
      firestore = true
      secrets   = ["CALLTRACK_GA4_SECRETS"]
    }
    crm_lead = {
      firestore      = true
      bigquery_write = true
      secrets        = ["CALLTRACK_CRM_SECRETS"]
    }
    crm_webhook = {
      firestore      = true
      bigquery_write = true
      secrets        = ["CALLTRACK_CRM_SECRETS"]
    }
    pool_watch = {
      firestore = true
    }
    utm_check = {
      firestore = true
    }
    export_conversions = {
      firestore      = true
      bigquery_write = true
      bigquery_query = true
      secrets        = ["CALLTRACK_EXPORT_SECRETS"]
    }
    # MERGE into quality_daily: a query job that writes (dataEditor).
    quality_report = {
      bigquery_write = true
      bigquery_query = true
    }
    # Reads a call's recording reference; Twilio's needs the auth token.
    recording = {
      bigquery_query = true
      secrets = [
        "CALLTRACK_PROVIDER_SECRETS", "CALLTRACK_RECORDING_LINK_SECRET",
      ]
    }
  }

  access_defaults = {
    firestore      = false
    bigquery_write = false
    bigquery_query = false
    secrets        = []
  }
  access = {
    for name in keys(local.functions) : name => merge(
      local.access_defaults, try(local.function_access[name], {})
    )
  }

  # The Cloud Run service behind each function, for run.invoker grants: a
  # 2nd gen function runs as the service of the same name.
  services_of = {
    for k, fn in google_cloudfunctions2_function.function : k => fn.name
  }

  pubsub_agent = join("", [
    "serviceAccount:service-", data.google_project.this.number,
    "@gcp-sa-pubsub.iam.gserviceaccount.com",
  ])

  function_secrets = merge([
    for name, a in local.access : {
      for env in a.secrets : "${name}/${env}" => { function = name, env = env }
    }
  ]...)
  function_topics = merge([
    for name, fn in local.functions : {
      for t in fn.publishes : "${name}/${t}" => { function = name, topic = t }
    }
  ]...)
  private_invokers = merge([
    for name, fn in local.http_functions : {
      for m in var.private_invokers : "${name}/${m}" => {
        function = name, member = m
      }
    } if !fn.public
  ]...)
}

# --- One service account per function --------------------------------------

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = "fn-${each.value.service}"
  display_name = "calltrack function ${each.key}"
  description  = "Runs the ${each.key} function; holds only what its code uses (iam.tf)."

  lifecycle {
    precondition {
      condition     = length("fn-${each.value.service}") <= 30
      error_message = "Expected function name ${each.key} to be at most 27 characters: its service account id fn-<name> is limited to 30."
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "function_firestore" {
  for_each = { for k, v in local.access : k => v if v.firestore }

  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.function[each.key].member
}

resource "google_bigquery_dataset_iam_member" "function" {
  for_each = {
    for k, v in local.access : k => v if v.bigquery_write || v.bigquery_query
  }

  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  role = (
    each.value.bigquery_write
    ? "roles/bigquery.dataEditor" : "roles/bigquery.dataViewer"
  )
  member = google_service_account.function[each.key].member
}

# Query jobs run in the project; reading the data is the dataset grant above.
resource "google_project_iam_member" "function_bigquery_jobs" {
  for_each = { for k, v in local.access : k => v if v.bigquery_query }

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.function[each.key].member
}

resource "google_secret_manager_secret_iam_member" "function" {
  for_each = local.function_secrets

  secret_id = google_secret_manager_secret.setting[each.value.env].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}

resource "google_pubsub_topic_iam_member" "function_publisher" {
  for_each = local.function_topics

  topic  = google_pubsub_topic.topic[each.value.topic].name
  role   = "roles/pubsub.publisher"
  member = google_service_account.function[each.value.function].member
}

# --- Who may call the functions --------------------------------------------

# Pages and telephony providers call these without Google credentials; each
# function checks its callers itself (allowed origins, webhook signatures).
resource "google_cloud_run_v2_service_iam_member" "public" {
  #checkov:skip=CKV_GCP_102:Public by design (manifest "public": true): browsers and telephony providers call these; the code checks origins and signatures.
  for_each = { for k, v in local.http_functions : k => v if v.public }

  project  = var.project_id
  location = var.region
  name     = local.services_of[each.key]
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "private" {
  for_each = local.private_invokers

  project  = var.project_id
  location = var.region
  name     = local.services_of[each.value.function]
  role     = "roles/run.invoker"
  member   = each.value.member
}

# Pub/Sub signs each push with an OIDC token of this account.
resource "google_service_account" "push" {
  account_id   = "calltrack-push"
  display_name = "calltrack Pub/Sub push"
  description  = "Identity of Pub/Sub push deliveries to the event functions."

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_v2_service_iam_member" "push" {
  for_each = local.pubsub_functions

  project  = var.project_id
  location = var.region
  name     = local.services_of[each.key]
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

# --- The Pub/Sub service agent ---------------------------------------------

# It mints the push tokens for the push account...
resource "google_service_account_iam_member" "pubsub_agent_token" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# ...publishes a message to the dead-letter topic after the last attempt...
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter" {
  for_each = google_pubsub_topic.dead_letter

  topic  = each.value.name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

# ...and acknowledges it on the source subscription.
resource "google_pubsub_subscription_iam_member" "pubsub_agent_source" {
  for_each = google_pubsub_subscription.push

  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# --- Builds -----------------------------------------------------------------

# Cloud Functions builds each image with this account rather than the
# project's default compute account, which new projects no longer grant
# broad roles.
resource "google_service_account" "build" {
  account_id   = "calltrack-build"
  display_name = "calltrack function builds"
  description  = "Builds the functions' images from the source archives."

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "build" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

resource "google_artifact_registry_repository_iam_member" "build" {
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}
