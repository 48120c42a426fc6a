# Secret Manager secrets for the settings that hold credentials. Terraform
# creates each secret and its access grants; the values are added outside
# Terraform (docs/deploy.md, "Secrets"), so they never enter the state.

locals {
  # Every secret setting in shared/settings.py, by the environment variable
  # the code reads. tests/test_infra.py fails when the code reads a secret
  # setting that is missing here. Each secret's id defaults to the name in
  # lower case with hyphens (calltrack-provider-secrets); var.secret_ids
  # overrides it.
  secret_settings = [
    # JSON {site_id: {secret name: value}}: call providers' webhook secrets.
    "CALLTRACK_PROVIDER_SECRETS",
    # JSON {site_id: api_secret}: GA4 Measurement Protocol secrets.
    "CALLTRACK_GA4_SECRETS",
    # JSON {site_id: {credential: value}}: ad platform credentials (exports).
    "CALLTRACK_EXPORT_SECRETS",
    # JSON {site_id: {secret name: value}}: CRM tokens and webhook secrets.
    "CALLTRACK_CRM_SECRETS",
    # Text: the HMAC key of short-lived recording links; rotate to end them all.
    "CALLTRACK_RECORDING_LINK_SECRET",
  ]

  secret_ids = {
    for env in local.secret_settings :
    env => lookup(var.secret_ids, env, lower(replace(env, "_", "-")))
  }
}

resource "google_secret_manager_secret" "setting" {
  for_each = local.secret_ids

  secret_id = each.value
  labels    = var.labels

  replication {
    auto {}
  }

  lifecycle {
    precondition {
      condition = alltrue([
        for env in keys(var.secret_ids) : contains(local.secret_settings, env)
      ])
      error_message = "Expected every key of var.secret_ids to be a secret setting listed in infra/secrets.tf."
    }
  }

  depends_on = [google_project_service.enabled]
}

# A function cannot deploy while its secret has no version, so each secret
# starts with an empty JSON object, which the code reads as "no secrets
# configured". Real values are added as new versions, which "latest" picks.
# Note: disable this first version if you like, but never destroy it:
# Terraform would add a new empty one, which would become "latest".
resource "google_secret_manager_secret_version" "placeholder" {
  for_each = google_secret_manager_secret.setting

  secret      = each.value.id
  secret_data = "{}"

  lifecycle {
    ignore_changes = [enabled]
  }
}
