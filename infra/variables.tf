# Inputs, alphabetical. Everything project-specific enters here; nothing
# below hard-codes a project, bucket or account id.

variable "alerts" {
  description = <<-EOT
    Where alerts go and when they fire. `notification_channels` takes ids of
    existing channels (projects/P/notificationChannels/N); `emails` creates
    an e-mail channel for each address. `pool_utilisation` is the share of a
    site's dynamic numbers in use (held or cooling) that opens an incident;
    `signature_failures` is the number of refused (401) webhook calls in five
    minutes that counts as a spike.
  EOT
  type = object({
    emails                = optional(list(string), [])
    notification_channels = optional(list(string), [])
    pool_utilisation      = optional(number, 0.75)
    signature_failures    = optional(number, 20)
  })
  default  = {}
  nullable = false

  validation {
    condition = alltrue([
      for c in var.alerts.notification_channels :
      can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))
    ])
    error_message = "Expected alerts.notification_channels as ids like projects/P/notificationChannels/123; copy them from `gcloud beta monitoring channels list --format='value(name)'`."
  }
  validation {
    condition = alltrue([
      for e in var.alerts.emails : can(regex("^[^@\\s]+@[^@\\s]+$", e))
    ])
    error_message = "Expected alerts.emails to hold e-mail addresses (name@example.com)."
  }
  validation {
    condition = (
      var.alerts.pool_utilisation > 0 && var.alerts.pool_utilisation <= 1
    )
    error_message = "Expected alerts.pool_utilisation as a share between 0 (exclusive) and 1, e.g. 0.75 for 75%."
  }
  validation {
    condition     = var.alerts.signature_failures >= 1
    error_message = "Expected alerts.signature_failures as a count of at least 1 refused webhook call per 5 minutes."
  }
}

variable "bigquery" {
  description = <<-EOT
    The warehouse dataset: its id and location (a multi-region such as EU or
    US, or a region; null uses var.region).
  EOT
  type = object({
    dataset_id = optional(string, "calltrack")
    location   = optional(string)
  })
  default  = {}
  nullable = false

  validation {
    condition     = can(regex("^[A-Za-z0-9_]{1,1024}$", var.bigquery.dataset_id))
    error_message = "Expected bigquery.dataset_id of letters, digits and underscores (BigQuery's rule); hyphens are not allowed."
  }
}

variable "build" {
  description = <<-EOT
    The Cloud Build trigger that tests, plans and (on apply_branch) applies
    this configuration; null creates none. `repository` is a 2nd-gen
    repository resource (projects/P/locations/R/connections/C/repositories/N),
    connected once in the console because the GitHub app needs a person's
    consent. `state_bucket` is the bucket `terraform init` was given.
  EOT
  type = object({
    repository   = string
    state_bucket = string
    branches     = optional(string, ".*")
    apply_branch = optional(string, "main")
  })
  default = null

  validation {
    condition = var.build == null || can(regex(
      "^projects/[^/]+/locations/[^/]+/connections/[^/]+/repositories/[^/]+$",
      var.build.repository,
    ))
    error_message = "Expected build.repository like projects/P/locations/R/connections/C/repositories/N; `gcloud builds repositories list --connection=C --region=R` shows it."
  }
  validation {
    condition = var.build == null || can(regex(
      "^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.build.state_bucket
    ))
    error_message = "Expected build.state_bucket as a bucket name (no gs:// prefix)."
  }
}

variable "deletion_protection" {
  description = <<-EOT
    Protect data (Firestore database, BigQuery tables, buckets) from
    `terraform destroy`. Turn off only for throwaway projects.
  EOT
  type        = bool
  default     = true
  nullable    = false
}

variable "firestore_location" {
  description = <<-EOT
    Firestore location: a multi-region (eur3, nam5) or a region; null uses
    var.region. It cannot change after the first apply.
  EOT
  type        = string
  default     = null

  validation {
    condition = var.firestore_location == null || can(regex(
      "^([a-z]+[0-9]+|[a-z]+-[a-z]+[0-9]+)$",
      coalesce(var.firestore_location, "x1"),
    ))
    error_message = "Expected firestore_location as a multi-region such as eur3 or nam5, or a region such as europe-west1."
  }
}

variable "functions" {
  description = <<-EOT
    Per-function sizing, keyed by the function's name in
    functions/manifest.json. Unset fields keep the defaults in functions.tf
    (512Mi, 1 vCPU, 8 concurrent requests, 0..20 instances, 60 s). A value
    here replaces the default map, so keep assign's min_instances = 1.
  EOT
  type = map(object({
    concurrency   = optional(number)
    cpu           = optional(string)
    max_instances = optional(number)
    memory        = optional(string)
    min_instances = optional(number)
    timeout_s     = optional(number)
  }))
  # The snippet waits for assign before it can show a number: one warm
  # instance keeps cold starts off that path.
  default  = { assign = { min_instances = 1 } }
  nullable = false

  validation {
    condition = alltrue([
      for name in keys(var.functions) : can(regex("^[a-z][a-z0-9_]*$", name))
    ])
    error_message = "Expected functions keys to be function names from functions/manifest.json (lower case, digits, underscores)."
  }
  validation {
    condition = alltrue([
      for f in values(var.functions) :
      f.timeout_s == null || try(f.timeout_s >= 1 && f.timeout_s <= 540, false)
    ])
    error_message = "Expected functions[*].timeout_s between 1 and 540 seconds (the limit for event-driven functions)."
  }
  validation {
    condition = alltrue([
      for f in values(var.functions) :
      f.memory == null || can(regex("^[0-9]+(Mi|Gi|M|G)$", f.memory))
    ])
    error_message = "Expected functions[*].memory like 256Mi, 512Mi or 1Gi."
  }
  validation {
    condition = alltrue([
      for f in values(var.functions) :
      try(coalesce(f.min_instances, 0) <= coalesce(f.max_instances, 20), false)
    ])
    error_message = "Expected functions[*].min_instances to be at most max_instances (default 20)."
  }
}

variable "labels" {
  description = "Labels put on every resource that takes labels."
  type        = map(string)
  default     = { app = "calltrack" }
  nullable    = false

  validation {
    condition = alltrue([
      for k, v in var.labels :
      can(regex("^[a-z][a-z0-9_-]{0,62}$", k))
      && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "Expected labels as lower-case keys (starting with a letter) and values of at most 63 of [a-z0-9_-]."
  }
}

variable "log_level" {
  description = "Log level of every function (CALLTRACK_LOG_LEVEL)."
  type        = string
  default     = "INFO"
  nullable    = false

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "Expected log_level to be one of DEBUG, INFO, WARNING, ERROR."
  }
}

variable "private_invokers" {
  description = <<-EOT
    Members allowed to call the HTTP functions that are not public (e.g.
    recording), such as group:support@example.com.
  EOT
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition = alltrue([
      for m in var.private_invokers :
      can(regex("^(user|group|serviceAccount|domain):.+$", m))
    ])
    error_message = "Expected private_invokers as IAM members: user:, group:, serviceAccount: or domain: followed by the name. allUsers is not allowed here; mark the function public in functions/manifest.json instead."
  }
}

variable "project_id" {
  description = "The project to deploy into (its id, not its name or number)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "Expected project_id as a project id (6-30 of a-z, 0-9 and hyphens, starting with a letter); `gcloud projects list` shows it."
  }
}

variable "region" {
  description = <<-EOT
    Region of the functions, buckets, scheduler jobs and image repository,
    e.g. europe-west1.
  EOT
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "Expected region as a Google Cloud region such as europe-west1 (not a zone such as europe-west1-b)."
  }
}

variable "schedules" {
  description = <<-EOT
    Cron schedules (in time_zone) of the ticks that start the conversion
    exports, the quality report and the pool watch (utilisation logs).
  EOT
  type = object({
    exports   = optional(string, "15 * * * *")
    quality   = optional(string, "0 6 * * *")
    pool      = optional(string, "*/5 * * * *")
    time_zone = optional(string, "Etc/UTC")
  })
  default  = {}
  nullable = false

  validation {
    condition = alltrue([
      for s in [var.schedules.exports, var.schedules.quality, var.schedules.pool] :
      length(split(" ", trimspace(s))) == 5
    ])
    error_message = "Expected schedules.exports, .quality and .pool as five-field cron expressions, e.g. \"15 * * * *\"."
  }
  validation {
    condition = can(regex(
      "^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", var.schedules.time_zone
    ))
    error_message = "Expected schedules.time_zone as a tz database name such as Europe/Moscow or Etc/UTC."
  }
}

variable "secret_ids" {
  description = <<-EOT
    Secret Manager ids to use instead of the defaults in secrets.tf, keyed by
    the environment variable the code reads (e.g. CALLTRACK_PROVIDER_SECRETS).
    Terraform creates the secrets; their values are added outside it.
  EOT
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition = alltrue([
      for k in keys(var.secret_ids) : can(regex("^CALLTRACK_[A-Z0-9_]+$", k))
    ])
    error_message = "Expected secret_ids keys as the environment variable names in shared/settings.py, e.g. CALLTRACK_PROVIDER_SECRETS."
  }
  validation {
    condition = alltrue([
      for v in values(var.secret_ids) : can(regex("^[A-Za-z0-9_-]{1,255}$", v))
    ])
    error_message = "Expected secret_ids values as Secret Manager ids: letters, digits, hyphens and underscores."
  }
}

variable "recording_readers" {
  description = <<-EOT
    Who may listen to call recordings through the recording function:
    members (user:EMAIL or domain:DOMAIN) and the OAuth client id their
    Google ID tokens are issued for (audience). Empty members: nobody.
  EOT
  type = object({
    members  = list(string)
    audience = string
  })
  default  = { members = [], audience = "" }
  nullable = false

  validation {
    condition = alltrue([
      for m in var.recording_readers.members :
      can(regex("^(user|domain):[^\\s:]+$", m))
    ])
    error_message = "Expected recording_readers.members as user:EMAIL or domain:DOMAIN."
  }
  validation {
    condition = (
      length(var.recording_readers.members) == 0
      || var.recording_readers.audience != ""
    )
    error_message = "Expected recording_readers.audience (an OAuth client id) when members are given."
  }
}

variable "settings" {
  description = <<-EOT
    Extra plain environment variables for every function, e.g.
    { CALLTRACK_PICK_WINDOW = "48" } (names in shared/settings.py). Secrets
    never go here: they come from Secret Manager (see secret_ids).
  EOT
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition = alltrue([
      for k in keys(var.settings) : can(regex("^CALLTRACK_[A-Z0-9_]+$", k))
    ])
    error_message = "Expected settings keys as CALLTRACK_* names from shared/settings.py."
  }
  validation {
    condition = alltrue([
      for k in keys(var.settings) :
      !can(regex("SECRET|TOKEN|PASSWORD|KEY", k)) &&
      !contains(
        ["CALLTRACK_BACKEND", "CALLTRACK_DATASET", "CALLTRACK_LOG_LEVEL"], k
      )
    ])
    error_message = "Expected no secrets in settings (use secret_ids and Secret Manager) and none of CALLTRACK_BACKEND, CALLTRACK_DATASET, CALLTRACK_LOG_LEVEL (set from other variables)."
  }
}

variable "sites" {
  description = <<-EOT
    Sites, keyed by site id; each becomes the Firestore document sites/<id>
    that `python -m ops site-configure` would write. Unset fields are left
    out of the document, so the code's defaults (shared/sites.py) apply.
    Leave empty to manage sites with the ops command instead: an apply
    overwrites a Terraform-managed site's document.
  EOT
  type = map(object({
    default_number  = string
    allowed_origins = list(string)
    region          = optional(string)
    timezone        = optional(string)
    currency        = optional(string)
    display_format  = optional(string)
    lease_s         = optional(number)
    renew_s         = optional(number)
    cooldown_s      = optional(number)
    overflow_policy = optional(string)
    dynamic_rule = optional(object({
      mediums   = optional(list(string))
      sources   = optional(list(string))
      click_ids = optional(bool)
      everyone  = optional(bool)
    }))
    static_routes = optional(list(object({
      number = string
      source = optional(string)
      medium = optional(string)
    })), [])
  }))
  default  = {}
  nullable = false

  validation {
    # The same pattern as shared/sites.py SITE_ID (tests/test_infra.py).
    condition = alltrue([
      for id in keys(var.sites) : can(regex("^[a-z0-9][a-z0-9_-]{1,62}$", id))
    ])
    error_message = "Expected sites keys as site ids of 2-63 of [a-z0-9_-], starting with a letter or digit."
  }
  validation {
    condition = alltrue(flatten([
      for s in values(var.sites) : [
        for n in concat(
          [s.default_number], [for r in s.static_routes : r.number]
        ) :
        can(regex("^\\+[1-9][0-9]{6,14}$", n))
      ]
    ]))
    error_message = "Expected sites[*].default_number and static_routes[*].number in E.164 (+74951234567): the document is written without the code's normalisation."
  }
  validation {
    condition = alltrue(flatten([
      for s in values(var.sites) : concat([length(s.allowed_origins) > 0], [
        for o in s.allowed_origins : can(regex("^https?://[^/]+$", o))
      ])
    ]))
    error_message = "Expected sites[*].allowed_origins to list at least one origin, each scheme and host only (https://example.com, no path or trailing slash)."
  }
  validation {
    condition = alltrue([
      for s in values(var.sites) :
      s.overflow_policy == null
      || contains(["default", "share"], coalesce(s.overflow_policy, "default"))
    ])
    error_message = "Expected sites[*].overflow_policy to be \"default\" or \"share\"."
  }
  validation {
    condition = alltrue([
      for s in values(var.sites) :
      coalesce(s.renew_s, 40) < coalesce(s.lease_s, 120)
      && coalesce(s.renew_s, 40) >= 1
    ])
    error_message = "Expected sites[*].renew_s (default 40) to be at least 1 and below lease_s (default 120), or the lease lapses between heartbeats."
  }
}

variable "snippet" {
  description = <<-EOT
    How the snippet (snippet/dist/ct.min.js) is served. By default from a
    public bucket at storage.googleapis.com, which Google's edge caches.
    Set `cdn_domain` to put Cloud CDN and a managed certificate in front
    (point the domain's A record at the `snippet_ip` output).
  EOT
  type = object({
    cdn_domain      = optional(string)
    location        = optional(string)
    cache_max_age_s = optional(number, 300)
  })
  default  = {}
  nullable = false

  validation {
    condition = var.snippet.cdn_domain == null || can(regex(
      "^([a-z0-9-]+\\.)+[a-z]{2,}$", coalesce(var.snippet.cdn_domain, "x")
    ))
    error_message = "Expected snippet.cdn_domain as a host name such as cdn.example.com (no scheme, no path)."
  }
  validation {
    condition = (
      var.snippet.cache_max_age_s >= 0 && var.snippet.cache_max_age_s <= 86400
    )
    error_message = "Expected snippet.cache_max_age_s between 0 and 86400: a longer cache delays snippet fixes reaching pages."
  }
}
