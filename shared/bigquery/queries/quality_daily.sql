-- The quality checks of one day (@day, UTC), one row per check as in the
-- quality_daily table (without computed_at). shared/quality.py merges it into
-- quality_daily and logs every breached row. It reads the base tables with
-- filters on their partition columns (the day and the 7 days before; leads 30
-- days), so a run scans a week of data, not the whole history.
-- Targets (docs/warehouse.md, "Quality"):
--   sessions_per_click, calls_per_session  per campaign: drift of more than
--       20% from the trailing 7-day ratio, when today and the trailing week
--       each have a denominator of at least 10
--   attributed_share   at least 0.95 of the day's calls carry a touch
--   crm_convergence    at least 0.98 of the day's calls reached the CRM as a
--       lead row (only for sites with a lead in the 30 days before)
--   unswapped_share    calls to the default or an unknown number: reported
--   overflow_sessions  sessions that found the pool exhausted: at most 0
--   spam_share         spam verdicts among the day's reviewed calls: at most
--       0.1, once at least 5 calls are reviewed
WITH calls AS (
  SELECT *
  FROM `{dataset}.calls`
  WHERE
    started_at >= TIMESTAMP(DATE_SUB(@day, INTERVAL 7 DAY))
    AND started_at < TIMESTAMP(DATE_ADD(@day, INTERVAL 1 DAY))
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY call_id ORDER BY version DESC, recorded_at DESC
  ) = 1
),

sessions AS (
  SELECT *
  FROM `{dataset}.sessions`
  WHERE
    started_at >= TIMESTAMP(DATE_SUB(@day, INTERVAL 7 DAY))
    AND started_at < TIMESTAMP(DATE_ADD(@day, INTERVAL 1 DAY))
),

activity AS (
  SELECT
    date, site_id, utm_source AS source, utm_medium AS medium,
    campaign_key AS campaign, clicks, 0 AS sessions, 0 AS calls
  FROM `{dataset}.ad_costs_latest`
  WHERE date BETWEEN DATE_SUB(@day, INTERVAL 7 DAY) AND @day

  UNION ALL

  SELECT
    DATE(started_at), site_id, IFNULL(source, '(not set)'),
    IFNULL(medium, '(not set)'), IFNULL(campaign, '(not set)'), 0, 1, 0
  FROM sessions

  UNION ALL

  SELECT
    DATE(started_at), site_id, source, IFNULL(medium, '(not set)'),
    IFNULL(campaign, '(not set)'), 0, 0, 1
  FROM calls
  WHERE source IS NOT NULL
),

per_day AS (
  SELECT
    date, site_id, source, medium, campaign,
    SUM(clicks) AS clicks, SUM(sessions) AS sessions, SUM(calls) AS calls
  FROM activity
  GROUP BY 1, 2, 3, 4, 5
),

ratios AS (
  SELECT
    site_id, source, medium, campaign, 'sessions_per_click' AS check_name,
    SUM(IF(date = @day, sessions, 0)) AS num,
    SUM(IF(date = @day, clicks, 0)) AS den,
    SUM(IF(date < @day, sessions, 0)) AS base_num,
    SUM(IF(date < @day, clicks, 0)) AS base_den
  FROM per_day
  GROUP BY 1, 2, 3, 4

  UNION ALL

  SELECT
    site_id, source, medium, campaign, 'calls_per_session',
    SUM(IF(date = @day, calls, 0)),
    SUM(IF(date = @day, sessions, 0)),
    SUM(IF(date < @day, calls, 0)),
    SUM(IF(date < @day, sessions, 0))
  FROM per_day
  GROUP BY 1, 2, 3, 4
),

drift AS (
  SELECT
    site_id, check_name, source, medium, campaign,
    CAST(num AS FLOAT64) AS numerator,
    CAST(den AS FLOAT64) AS denominator,
    SAFE_DIVIDE(num, den) AS value,
    SAFE_DIVIDE(base_num, base_den) AS baseline,
    'drift' AS comparison,
    0.2 AS target,
    IFNULL(
      den >= 10 AND base_den >= 10
      AND ABS(
        SAFE_DIVIDE(SAFE_DIVIDE(num, den), SAFE_DIVIDE(base_num, base_den)) - 1
      ) > 0.2,
      FALSE
    ) AS breached
  FROM ratios
  WHERE den > 0 OR base_den > 0
),

today_calls AS (
  SELECT *
  FROM calls
  WHERE DATE(started_at) = @day
),

call_facts AS (
  SELECT
    site_id,
    COUNT(*) AS calls,
    COUNTIF(source IS NOT NULL) AS attributed,
    COUNTIF(number_kind IN ('default', 'unknown')) AS unswapped
  FROM today_calls
  GROUP BY site_id
),

crm_sites AS (
  SELECT DISTINCT site_id
  FROM `{dataset}.leads`
  WHERE
    created_at >= TIMESTAMP(DATE_SUB(@day, INTERVAL 30 DAY))
    AND created_at < TIMESTAMP(DATE_ADD(@day, INTERVAL 3 DAY))
),

led AS (
  SELECT c.site_id, COUNT(DISTINCT c.call_id) AS calls_with_lead
  FROM today_calls AS c
  INNER JOIN `{dataset}.leads` AS l
    ON l.site_id = c.site_id AND l.call_id = c.call_id
  WHERE
    l.created_at >= TIMESTAMP(DATE_SUB(@day, INTERVAL 1 DAY))
    AND l.created_at < TIMESTAMP(DATE_ADD(@day, INTERVAL 3 DAY))
  GROUP BY c.site_id
),

reviews AS (
  SELECT c.site_id, r.verdict
  FROM today_calls AS c
  INNER JOIN `{dataset}.call_reviews` AS r
    ON r.site_id = c.site_id AND r.call_id = c.call_id
  WHERE r.reviewed_at >= TIMESTAMP(@day)
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY c.site_id, c.call_id ORDER BY r.reviewed_at DESC, r.review_id DESC
  ) = 1
),

spam AS (
  SELECT site_id, COUNTIF(verdict = 'spam') AS spam, COUNT(*) AS reviewed
  FROM reviews
  GROUP BY site_id
),

overflow AS (
  SELECT site_id, COUNTIF(IFNULL(pool_exhausted, FALSE)) AS exhausted
  FROM sessions
  WHERE DATE(started_at) = @day
  GROUP BY site_id
),

site_checks AS (
  SELECT
    site_id, 'attributed_share' AS check_name,
    CAST(attributed AS FLOAT64) AS numerator, CAST(calls AS FLOAT64) AS denominator,
    SAFE_DIVIDE(attributed, calls) AS value, 'at_least' AS comparison,
    0.95 AS target, SAFE_DIVIDE(attributed, calls) < 0.95 AS breached
  FROM call_facts

  UNION ALL

  SELECT
    f.site_id, 'crm_convergence',
    CAST(IFNULL(l.calls_with_lead, 0) AS FLOAT64), CAST(f.calls AS FLOAT64),
    SAFE_DIVIDE(IFNULL(l.calls_with_lead, 0), f.calls), 'at_least', 0.98,
    SAFE_DIVIDE(IFNULL(l.calls_with_lead, 0), f.calls) < 0.98
  FROM call_facts AS f
  INNER JOIN crm_sites AS s ON s.site_id = f.site_id
  LEFT JOIN led AS l ON l.site_id = f.site_id

  UNION ALL

  SELECT
    site_id, 'unswapped_share', CAST(unswapped AS FLOAT64),
    CAST(calls AS FLOAT64), SAFE_DIVIDE(unswapped, calls), 'none',
    CAST(NULL AS FLOAT64), FALSE
  FROM call_facts

  UNION ALL

  SELECT
    site_id, 'overflow_sessions', CAST(exhausted AS FLOAT64),
    CAST(NULL AS FLOAT64), CAST(exhausted AS FLOAT64), 'at_most', 0.0,
    exhausted > 0
  FROM overflow

  UNION ALL

  SELECT
    site_id, 'spam_share', CAST(spam AS FLOAT64), CAST(reviewed AS FLOAT64),
    SAFE_DIVIDE(spam, reviewed), 'at_most', 0.1,
    reviewed >= 5 AND SAFE_DIVIDE(spam, reviewed) > 0.1
  FROM spam
)

SELECT
  @day AS date, site_id, check_name, source, medium, campaign,
  numerator, denominator, value, baseline, comparison, target, breached
FROM drift

UNION ALL

SELECT
  @day, site_id, check_name, CAST(NULL AS STRING), CAST(NULL AS STRING),
  CAST(NULL AS STRING), numerator, denominator, value,
  CAST(NULL AS FLOAT64), comparison, target, IFNULL(breached, FALSE)
FROM site_checks
