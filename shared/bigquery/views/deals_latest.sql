-- Every deal once, in its latest state (deals is an append-only log of stage
-- changes: the latest changed_at, then recorded_at, wins), tied to its call:
-- the call_id any of its rows carries, else the call of the lead it came from.
-- won_revenue is the revenue of a won deal, 0 otherwise.
WITH ranked AS (
  SELECT
    *,
    MAX(call_id) OVER deal AS any_call_id,
    MAX(crm_lead_id) OVER deal AS any_lead_id,
    ROW_NUMBER() OVER (
      PARTITION BY site_id, crm, crm_deal_id
      ORDER BY changed_at DESC, recorded_at DESC
    ) AS rn
  FROM `{dataset}.deals`
  WINDOW deal AS (PARTITION BY site_id, crm, crm_deal_id)
),

lead_calls AS (
  SELECT site_id, crm, crm_lead_id, MIN(call_id) AS call_id
  FROM `{dataset}.leads`
  WHERE crm_lead_id IS NOT NULL AND action = 'created'
  GROUP BY site_id, crm, crm_lead_id
)

SELECT
  d.site_id,
  d.crm,
  d.crm_deal_id,
  d.any_lead_id AS crm_lead_id,
  COALESCE(d.any_call_id, l.call_id) AS call_id,
  d.visitor_id,
  d.session_id,
  d.pipeline,
  d.stage,
  IFNULL(d.won, FALSE) AS won,
  IFNULL(d.lost, FALSE) AS lost,
  d.revenue,
  d.currency,
  IF(IFNULL(d.won, FALSE), IFNULL(d.revenue, 0), 0) AS won_revenue,
  d.changed_at
FROM ranked AS d
LEFT JOIN lead_calls AS l
  ON l.site_id = d.site_id AND l.crm = d.crm AND l.crm_lead_id = d.any_lead_id
WHERE d.rn = 1
