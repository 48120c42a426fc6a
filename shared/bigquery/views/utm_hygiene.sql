-- UTM hygiene per site, day and traffic source (docs/utm.md, "Hygiene views").
-- A session is non-conforming when the UTM values it arrived with had any
-- finding; "rewritten" when the normaliser stored something else than arrived
-- (the report is whole, the link still needs fixing); "unresolved" when a
-- finding is one normalising cannot fix (unknown value, campaign shape or
-- month, macros), so the report may still split. Filter on day: the sessions
-- table is partitioned by started_at.
WITH classified AS (
  SELECT
    site_id,
    DATE(started_at) AS day,
    source,
    (
      utm_raw IS NOT NULL
      OR last_touch.utm_source IS NOT NULL
      OR last_touch.utm_medium IS NOT NULL
      OR campaign IS NOT NULL
      OR content IS NOT NULL
      OR term IS NOT NULL
    ) AS tagged,
    ARRAY_LENGTH(utm_findings) > 0 AS nonconforming,
    (
      (utm_raw.utm_source IS NOT NULL
        AND utm_raw.utm_source IS DISTINCT FROM source)
      OR (utm_raw.utm_medium IS NOT NULL
        AND utm_raw.utm_medium IS DISTINCT FROM medium)
      OR (utm_raw.utm_campaign IS NOT NULL
        AND utm_raw.utm_campaign IS DISTINCT FROM campaign)
      OR (utm_raw.utm_content IS NOT NULL
        AND utm_raw.utm_content IS DISTINCT FROM content)
      OR (utm_raw.utm_term IS NOT NULL
        AND utm_raw.utm_term IS DISTINCT FROM term)
    ) AS rewritten,
    EXISTS (
      SELECT 1
      FROM UNNEST(utm_findings) AS code
      WHERE code IN (
        'unusable', 'macro_not_allowed', 'macro_unknown', 'unknown_value',
        'campaign_format', 'campaign_part_unknown', 'campaign_month'
      )
    ) AS unresolved
  FROM `{dataset}.sessions`
)
SELECT
  site_id,
  day,
  source,
  COUNT(*) AS sessions,
  COUNTIF(tagged) AS tagged_sessions,
  COUNTIF(nonconforming) AS nonconforming_sessions,
  COUNTIF(rewritten) AS rewritten_sessions,
  COUNTIF(unresolved) AS unresolved_sessions,
  SAFE_DIVIDE(COUNTIF(nonconforming), COUNTIF(tagged)) AS nonconforming_share
FROM classified
GROUP BY site_id, day, source
