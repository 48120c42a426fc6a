-- The UTM values that arrived other than they were stored, per site, month and
-- field, most frequent first (docs/utm.md, "Hygiene views"): what to fix in the
-- ad accounts. stored_value is what reports group by; for utm_source and
-- utm_medium that is the session's source and medium. offender_rank 1 is the
-- most frequent raw value of its site, month and field.
WITH raw_values AS (
  SELECT
    site_id,
    DATE_TRUNC(DATE(started_at), MONTH) AS month,
    'utm_source' AS field,
    utm_raw.utm_source AS raw_value,
    source AS stored_value
  FROM `{dataset}.sessions`
  WHERE utm_raw.utm_source IS NOT NULL
  UNION ALL
  SELECT
    site_id,
    DATE_TRUNC(DATE(started_at), MONTH) AS month,
    'utm_medium' AS field,
    utm_raw.utm_medium AS raw_value,
    medium AS stored_value
  FROM `{dataset}.sessions`
  WHERE utm_raw.utm_medium IS NOT NULL
  UNION ALL
  SELECT
    site_id,
    DATE_TRUNC(DATE(started_at), MONTH) AS month,
    'utm_campaign' AS field,
    utm_raw.utm_campaign AS raw_value,
    campaign AS stored_value
  FROM `{dataset}.sessions`
  WHERE utm_raw.utm_campaign IS NOT NULL
  UNION ALL
  SELECT
    site_id,
    DATE_TRUNC(DATE(started_at), MONTH) AS month,
    'utm_content' AS field,
    utm_raw.utm_content AS raw_value,
    content AS stored_value
  FROM `{dataset}.sessions`
  WHERE utm_raw.utm_content IS NOT NULL
  UNION ALL
  SELECT
    site_id,
    DATE_TRUNC(DATE(started_at), MONTH) AS month,
    'utm_term' AS field,
    utm_raw.utm_term AS raw_value,
    term AS stored_value
  FROM `{dataset}.sessions`
  WHERE utm_raw.utm_term IS NOT NULL
),
counted AS (
  SELECT
    site_id,
    month,
    field,
    raw_value,
    stored_value,
    COUNT(*) AS sessions
  FROM raw_values
  WHERE raw_value IS DISTINCT FROM stored_value
  GROUP BY site_id, month, field, raw_value, stored_value
)
SELECT
  *,
  ROW_NUMBER() OVER (
    PARTITION BY site_id, month, field
    ORDER BY sessions DESC, raw_value
  ) AS offender_rank
FROM counted
