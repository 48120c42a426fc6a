-- UTM findings per campaign: for each site, month, source, medium and stored
-- campaign, how many sessions arrived with each finding code (docs/utm.md,
-- "Hygiene views"). A session with two findings counts under both codes.
SELECT
  site_id,
  DATE_TRUNC(DATE(started_at), MONTH) AS month,
  source,
  medium,
  campaign,
  code,
  COUNT(*) AS sessions
FROM `{dataset}.sessions`
CROSS JOIN UNNEST(utm_findings) AS code
GROUP BY site_id, month, source, medium, campaign, code
