output "function_urls" {
  description = "Each function's URL (Cloud Run form, whose path reaches the function as sent; configure providers with it)."
  value       = local.function_urls
  # The public ones answer only once anyone may call them.
  depends_on = [google_cloud_run_v2_service_iam_member.public]
}

output "webhook_url_template" {
  description = "The URL to give a telephony provider: replace PROVIDER (twilio, mango, zadarma, uis, generic) and SITE."
  value = (
    contains(keys(local.function_urls), "call_webhook")
    ? "${local.function_urls.call_webhook}/PROVIDER/SITE" : null
  )
  depends_on = [google_cloud_run_v2_service_iam_member.public]
}

output "snippet_url" {
  description = "Where pages load the snippet from."
  value       = local.snippet_url
}

output "snippet_tag" {
  description = "The tag to paste into a site's pages, before </body>; replace SITE with the site id."
  value       = local.snippet_tags["SITE"]
  depends_on  = [google_storage_bucket_iam_member.snippet_public]
}

output "snippet_tags" {
  description = "The paste-in tag for each site in var.sites."
  value       = { for id in keys(var.sites) : id => local.snippet_tags[id] }
  depends_on  = [google_storage_bucket_iam_member.snippet_public]
}

output "snippet_ip" {
  description = "With snippet.cdn_domain set: the address the domain's A record must point at."
  value       = try(google_compute_global_address.snippet[0].address, null)
}

output "dataset" {
  description = "The BigQuery dataset, as project.dataset."
  value = join(".", [
    var.project_id, google_bigquery_dataset.warehouse.dataset_id
  ])
}

output "dead_letter_subscriptions" {
  description = "Pull subscriptions holding each topic's dead letters, for inspection and replay."
  value = {
    for t, s in google_pubsub_subscription.dead_letter : t => s.name
  }
}

output "secrets" {
  description = "Secret Manager ids by setting: add their values with `gcloud secrets versions add ID --data-file=-`."
  value = {
    for env, s in google_secret_manager_secret.setting : env => s.secret_id
  }
}

output "service_accounts" {
  description = "The e-mail of each function's service account."
  value = {
    for k, sa in google_service_account.function : k => sa.email
  }
}

locals {
  function_urls = {
    for k, fn in google_cloudfunctions2_function.function :
    k => fn.service_config[0].uri
  }
  assign_url = lookup(local.function_urls, "assign", "")
  snippet_tags = {
    for id in concat(["SITE"], keys(var.sites)) : id => join("", [
      "<script async src=\"", local.snippet_url, "\" data-site=\"", id,
      "\" data-endpoint=\"", local.assign_url, "\"></script>",
    ])
  }
}
