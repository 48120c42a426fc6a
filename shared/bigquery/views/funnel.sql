-- The funnel per day, site, attribution model and campaign (source, medium,
-- campaign). Sessions (by their own touch and start day) and ad costs (by
-- spend day) are the same in every model; calls and what follows them are
-- credited by calls_by_model and dated by the call's day, so a deal closed
-- later counts on the day of the call that brought it. Every additive measure
-- adds up to the same total in every model; unique_callers is a distinct
-- count and does not add across rows. The ratio columns hold for the row
-- only: in Looker Studio aggregate them as SUM(cost) / SUM(calls) and so on.
--   target_calls  calls meeting the site's target rule (calls_latest)
--   leads         calls that created a CRM lead (leads.action = 'created')
--   deals         deals from those calls, in any state (deals_latest)
--   won_deals     deals whose latest state is won
--   revenue       latest revenue of the won deals
WITH models AS (
  SELECT model
  FROM UNNEST(
    ['first_touch', 'last_touch', 'last_non_direct', 'position_based']
  ) AS model
),

sessions AS (
  SELECT
    DATE(started_at) AS date,
    site_id,
    IFNULL(source, '(not set)') AS source,
    IFNULL(medium, '(not set)') AS medium,
    IFNULL(campaign, '(not set)') AS campaign,
    COUNT(DISTINCT session_id) AS sessions
  FROM `{dataset}.sessions`
  GROUP BY 1, 2, 3, 4, 5
),

costs AS (
  SELECT
    date,
    site_id,
    utm_source AS source,
    utm_medium AS medium,
    campaign_key AS campaign,
    SUM(impressions) AS impressions,
    SUM(clicks) AS clicks,
    CAST(SUM(cost) AS FLOAT64) AS cost
  FROM `{dataset}.ad_costs_latest`
  GROUP BY 1, 2, 3, 4, 5
),

leads AS (
  SELECT site_id, call_id
  FROM `{dataset}.leads`
  WHERE action = 'created'
  GROUP BY site_id, call_id
),

deals AS (
  SELECT
    site_id,
    call_id,
    COUNT(*) AS deals,
    COUNTIF(won) AS won_deals,
    SUM(won_revenue) AS revenue
  FROM `{dataset}.deals_latest`
  WHERE call_id IS NOT NULL
  GROUP BY site_id, call_id
),

calls AS (
  SELECT
    m.call_date AS date,
    m.site_id,
    m.model,
    m.source,
    m.medium,
    m.campaign,
    SUM(m.weight) AS calls,
    SUM(IF(m.target, m.weight, 0)) AS target_calls,
    COUNT(DISTINCT m.caller_hash) AS unique_callers,
    SUM(IF(l.call_id IS NULL, 0, m.weight)) AS leads,
    SUM(m.weight * IFNULL(d.deals, 0)) AS deals,
    SUM(m.weight * IFNULL(d.won_deals, 0)) AS won_deals,
    SUM(m.weight * IFNULL(d.revenue, 0)) AS revenue
  FROM `{dataset}.calls_by_model` AS m
  LEFT JOIN leads AS l ON l.site_id = m.site_id AND l.call_id = m.call_id
  LEFT JOIN deals AS d ON d.site_id = m.site_id AND d.call_id = m.call_id
  GROUP BY 1, 2, 3, 4, 5, 6
),

unioned AS (
  SELECT
    s.date, s.site_id, m.model, s.source, s.medium, s.campaign,
    s.sessions, 0 AS impressions, 0 AS clicks, 0.0 AS cost,
    0.0 AS calls, 0.0 AS target_calls, 0 AS unique_callers, 0.0 AS leads,
    0.0 AS deals, 0.0 AS won_deals, 0.0 AS revenue
  FROM sessions AS s
  CROSS JOIN models AS m

  UNION ALL

  SELECT
    k.date, k.site_id, m.model, k.source, k.medium, k.campaign,
    0, k.impressions, k.clicks, k.cost,
    0.0, 0.0, 0, 0.0, 0.0, 0.0, 0.0
  FROM costs AS k
  CROSS JOIN models AS m

  UNION ALL

  SELECT
    date, site_id, model, source, medium, campaign,
    0, 0, 0, 0.0,
    calls, target_calls, unique_callers, leads, deals, won_deals, revenue
  FROM calls
)

SELECT
  date,
  site_id,
  model,
  source,
  medium,
  campaign,
  SUM(sessions) AS sessions,
  SUM(impressions) AS impressions,
  SUM(clicks) AS clicks,
  SUM(cost) AS cost,
  SUM(calls) AS calls,
  SUM(target_calls) AS target_calls,
  SUM(unique_callers) AS unique_callers,
  SUM(leads) AS leads,
  SUM(deals) AS deals,
  SUM(won_deals) AS won_deals,
  SUM(revenue) AS revenue,
  SAFE_DIVIDE(SUM(cost), SUM(calls)) AS cost_per_call,
  SAFE_DIVIDE(SUM(cost), SUM(target_calls)) AS cost_per_target_call,
  SAFE_DIVIDE(SUM(cost), SUM(leads)) AS cost_per_lead,
  SAFE_DIVIDE(SUM(won_deals), SUM(calls)) AS call_to_deal,
  SAFE_DIVIDE(SUM(revenue), SUM(cost)) AS roas
FROM unioned
GROUP BY 1, 2, 3, 4, 5, 6
