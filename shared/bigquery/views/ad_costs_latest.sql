-- Ad spend as last loaded: the latest load of a (site_id, platform, date)
-- replaces every earlier load of that slice, so a corrected CSV loaded again
-- leaves no double spend. campaign_key is utm_campaign or '(not set)'.
WITH ranked AS (
  SELECT
    *,
    MAX(loaded_at) OVER (PARTITION BY site_id, platform, date) AS latest_load
  FROM `{dataset}.ad_costs`
)

SELECT
  date,
  site_id,
  platform,
  campaign_id,
  campaign,
  utm_source,
  utm_medium,
  utm_campaign,
  IFNULL(utm_campaign, '(not set)') AS campaign_key,
  IFNULL(impressions, 0) AS impressions,
  IFNULL(clicks, 0) AS clicks,
  cost,
  currency,
  load_id,
  loaded_at
FROM ranked
WHERE loaded_at = latest_load
