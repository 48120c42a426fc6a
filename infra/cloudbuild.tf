# The Cloud Build trigger that runs cloudbuild.yaml on every push (tests,
# plan) and applies on var.build.apply_branch, with its own deployer
# account. Created only when var.build is set; the first apply is then run
# by a person with Owner on the project (docs/deploy.md, "First deploy").

locals {
  build = { for k, v in { deploy = var.build } : k => v if v != null }

  # What applying this configuration takes. Administrative by nature: the
  # deployer creates service accounts and grants roles.
  deployer_roles = var.build == null ? [] : [
    "roles/artifactregistry.admin",
    "roles/bigquery.admin",
    "roles/cloudbuild.builds.editor",
    "roles/cloudfunctions.admin",
    "roles/cloudscheduler.admin",
    "roles/compute.loadBalancerAdmin",
    "roles/datastore.owner",
    "roles/iam.serviceAccountAdmin",
    "roles/logging.configWriter",
    "roles/logging.logWriter",
    "roles/monitoring.editor",
    "roles/pubsub.admin",
    "roles/resourcemanager.projectIamAdmin",
    "roles/run.admin",
    "roles/secretmanager.admin",
    "roles/serviceusage.serviceUsageAdmin",
    "roles/storage.admin",
  ]

  # Deploying a function or a push subscription acts as its account; the
  # deployer may act as these accounts only, not as any in the project.
  deployer_acts_as = {
    for k, name in merge(
      {
        for k, sa in google_service_account.function :
        "function/${k}" => sa.name
      },
      {
        build = google_service_account.build.name
        push  = google_service_account.push.name
      },
    ) : k => name if var.build != null
  }
}

resource "google_service_account" "deployer" {
  for_each = local.build

  account_id   = "calltrack-deployer"
  display_name = "calltrack deployer"
  description  = "Runs cloudbuild.yaml: tests, terraform plan and apply."

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "deployer" {
  #checkov:skip=CKV_GCP_49:The deployer applies this configuration, which creates service accounts; it acts only as the product's own accounts (google_service_account_iam_member.deployer).
  for_each = toset(local.deployer_roles)

  project = var.project_id
  role    = each.key
  member  = google_service_account.deployer["deploy"].member
}

resource "google_service_account_iam_member" "deployer" {
  for_each = local.deployer_acts_as

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.deployer["deploy"].member
}

resource "google_cloudbuild_trigger" "deploy" {
  for_each = local.build

  name        = "calltrack-deploy"
  description = "Tests, terraform plan; apply on ${each.value.apply_branch}."
  # A trigger lives in its repository connection's region.
  location        = regex("/locations/([^/]+)/", each.value.repository)[0]
  filename        = "cloudbuild.yaml"
  service_account = google_service_account.deployer["deploy"].id

  repository_event_config {
    repository = each.value.repository
    push {
      branch = each.value.branches
    }
  }

  substitutions = {
    _REGION       = var.region
    _STATE_BUCKET = each.value.state_bucket
    _APPLY_BRANCH = each.value.apply_branch
  }

  depends_on = [google_project_iam_member.deployer]
}
