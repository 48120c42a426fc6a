-- Calls to review by ear: per site, ISO week (Monday) and campaign of the
-- call's own touch, the 5 calls with the smallest FARM_FINGERPRINT of their
-- call id. The draw is random across calls but stable: the same calls come
-- back on every query, and a finished week's sample never changes. Record a
-- verdict with `python -m ops call-review`; it overrides the target rule in
-- calls_latest and so feeds the funnel. review_verdict is null until then.
SELECT
  site_id,
  DATE_TRUNC(call_date, ISOWEEK) AS week,
  IF(attributed, IFNULL(source, '(not set)'), '(unattributed)') AS source,
  IF(attributed, IFNULL(medium, '(not set)'), '(unattributed)') AS medium,
  IF(attributed, IFNULL(campaign, '(not set)'), '(not set)') AS campaign,
  call_id,
  started_at,
  caller_mask,
  answered,
  talk_s,
  recording_ref,
  target,
  review_verdict
FROM `{dataset}.calls_latest`
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY
    site_id,
    DATE_TRUNC(call_date, ISOWEEK),
    IF(attributed, IFNULL(source, '(not set)'), '(unattributed)'),
    IF(attributed, IFNULL(medium, '(not set)'), '(unattributed)'),
    IF(attributed, IFNULL(campaign, '(not set)'), '(not set)')
  ORDER BY FARM_FINGERPRINT(call_id)
) <= 5
