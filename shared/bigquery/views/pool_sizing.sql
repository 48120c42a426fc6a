-- Pool sizing per site from the last 30 days of holds (docs/accuracy.md).
-- peak_concurrent: the most dynamic-number holds open at once (a hold ends
-- at its latest known end: release, observed expiry, or lease end); the seed
-- rule is 1.2-1.3x that peak. The product's own recommendation, the smallest
-- pool whose simulated accuracy on the site's traffic shape reaches 99%, comes
-- from `python -m ops pool-size --site SITE`, which starts from this peak.
-- peak_hour: the hour the peak was reached; busy_hours: hours in which holds
-- reached 75% of the peak.
WITH latest AS (
  SELECT
    site_id,
    hold_id,
    held_from,
    held_until,
    ROW_NUMBER() OVER (
      PARTITION BY site_id, hold_id
      ORDER BY IF(event = 'start', 0, 1) DESC, held_until DESC
    ) AS n
  FROM `{dataset}.number_holds`
  WHERE held_from >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 30 DAY)
),
edges AS (
  SELECT site_id, held_from AS at, 1 AS step FROM latest WHERE n = 1
  UNION ALL
  SELECT site_id, held_until AS at, -1 AS step FROM latest WHERE n = 1
),
levels AS (
  SELECT
    site_id,
    at,
    SUM(step) OVER (
      PARTITION BY site_id
      ORDER BY at, step
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS level
  FROM edges
),
hourly AS (
  SELECT site_id, TIMESTAMP_TRUNC(at, HOUR) AS hour, MAX(level) AS level
  FROM levels
  GROUP BY site_id, hour
),
peaks AS (
  SELECT site_id, MAX(level) AS peak_concurrent
  FROM hourly
  GROUP BY site_id
)
SELECT
  p.site_id,
  p.peak_concurrent,
  CAST(CEIL(p.peak_concurrent * 1.2) AS INT64) AS seed_rule_low,
  CAST(CEIL(p.peak_concurrent * 1.3) AS INT64) AS seed_rule_high,
  MIN(IF(h.level = p.peak_concurrent, h.hour, NULL)) AS peak_hour,
  COUNTIF(h.level >= 0.75 * p.peak_concurrent) AS busy_hours
FROM peaks AS p
JOIN hourly AS h ON h.site_id = p.site_id
GROUP BY p.site_id, p.peak_concurrent
