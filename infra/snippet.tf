# The snippet pages load: snippet/dist/ct.min.js (built by `node
# snippet/build.mjs`; Cloud Build builds it before the plan), served from a
# public bucket, or through Cloud CDN on the deployer's domain when
# var.snippet.cdn_domain is set.

locals {
  snippet_file   = "${local.repo_root}/snippet/dist/ct.min.js"
  snippet_object = "ct.min.js"
  cdn            = var.snippet.cdn_domain != null

  snippet_url = join("/", [
    local.cdn
    ? "https://${var.snippet.cdn_domain}"
    : "https://storage.googleapis.com/${google_storage_bucket.snippet.name}",
    local.snippet_object,
  ])
}

resource "google_storage_bucket" "snippet" {
  #checkov:skip=CKV_GCP_62:Holds one public script; Cloud CDN or request logs of the assign function show its use, and usage logs would need a bucket of their own.
  #checkov:skip=CKV_GCP_114:Public on purpose: every landing page loads the snippet from here.
  name     = "${var.project_id}-calltrack-snippet"
  location = coalesce(var.snippet.location, var.region)

  uniform_bucket_level_access = true
  # The script is rebuilt from the repository: nothing here to protect.
  force_destroy = true

  versioning {
    enabled = true
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

# The provider compares the file's MD5 with the object's, so a rebuilt
# snippet is uploaded by the next apply under the same name.
resource "google_storage_bucket_object" "snippet" {
  name          = local.snippet_object
  bucket        = google_storage_bucket.snippet.name
  source        = local.snippet_file
  content_type  = "text/javascript; charset=utf-8"
  cache_control = "public, max-age=${var.snippet.cache_max_age_s}"
}

resource "google_storage_bucket_iam_member" "snippet_public" {
  #checkov:skip=CKV_GCP_28:Public on purpose: the bucket holds only the snippet that every landing page loads.
  bucket = google_storage_bucket.snippet.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}

# --- Optional Cloud CDN on the deployer's domain ---------------------------

resource "google_compute_backend_bucket" "snippet" {
  count = local.cdn ? 1 : 0

  name        = "calltrack-snippet"
  bucket_name = google_storage_bucket.snippet.name
  enable_cdn  = true

  cdn_policy {
    cache_mode  = "CACHE_ALL_STATIC"
    default_ttl = var.snippet.cache_max_age_s
    max_ttl     = var.snippet.cache_max_age_s
    client_ttl  = var.snippet.cache_max_age_s
  }

  depends_on = [google_project_service.enabled]
}

resource "google_compute_url_map" "snippet" {
  count = local.cdn ? 1 : 0

  name            = "calltrack-snippet"
  default_service = google_compute_backend_bucket.snippet[0].id
}

resource "google_compute_managed_ssl_certificate" "snippet" {
  count = local.cdn ? 1 : 0

  name = "calltrack-snippet"

  managed {
    domains = [var.snippet.cdn_domain]
  }
}

resource "google_compute_ssl_policy" "snippet" {
  count = local.cdn ? 1 : 0

  name            = "calltrack-snippet"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "snippet" {
  count = local.cdn ? 1 : 0

  name             = "calltrack-snippet"
  url_map          = google_compute_url_map.snippet[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.snippet[0].id]
  ssl_policy       = google_compute_ssl_policy.snippet[0].id
}

resource "google_compute_global_address" "snippet" {
  count = local.cdn ? 1 : 0

  name = "calltrack-snippet"
}

resource "google_compute_global_forwarding_rule" "snippet" {
  count = local.cdn ? 1 : 0

  name                  = "calltrack-snippet"
  target                = google_compute_target_https_proxy.snippet[0].id
  ip_address            = google_compute_global_address.snippet[0].id
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}
