-- Calls per attribution model: each call once per model, as rows of
-- (model, source, medium, campaign, weight) whose weights add up to 1 per
-- call and model, so Looker Studio can compare the models side by side.
--   first_touch      the visitor's first touch
--   last_touch       the call's own touch (the session that saw the number)
--   last_non_direct  the own touch, or the visitor's last non-direct touch
--                    when the own touch is direct (a direct return)
--   position_based   the visitor's sessions up to the matched one: 40% to
--                    the first, 40% to the last, 20% shared by those between
--                    (1 session: 100%; 2 sessions: 50/50); a call without
--                    known sessions (static number, expired sessions) gives
--                    its own touch 100%
-- An unattributed call is '(unattributed)' in every model. campaign is
-- '(not set)' when the touch had none.
WITH calls AS (
  SELECT *
  FROM `{dataset}.calls_latest`
),

sessions AS (
  SELECT site_id, session_id, visitor_id, started_at, source, medium, campaign
  FROM `{dataset}.sessions`
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY site_id, session_id ORDER BY started_at
  ) = 1
),

cutoffs AS (
  SELECT
    c.call_id,
    c.site_id,
    c.visitor_id,
    COALESCE(s.started_at, c.started_at) AS cutoff
  FROM calls AS c
  LEFT JOIN sessions AS s
    ON s.site_id = c.site_id AND s.session_id = c.session_id
  WHERE c.visitor_id IS NOT NULL AND c.source IS NOT NULL
),

touches AS (
  SELECT
    k.call_id,
    s.source,
    s.medium,
    s.campaign,
    ROW_NUMBER() OVER (
      PARTITION BY k.call_id ORDER BY s.started_at, s.session_id
    ) AS pos,
    COUNT(*) OVER (PARTITION BY k.call_id) AS n
  FROM cutoffs AS k
  INNER JOIN sessions AS s
    ON
      s.site_id = k.site_id
      AND s.visitor_id = k.visitor_id
      AND s.started_at <= k.cutoff
),

positions AS (
  SELECT
    call_id,
    source,
    medium,
    campaign,
    SUM(
      CASE
        WHEN n = 1 THEN 1.0
        WHEN n = 2 THEN 0.5
        WHEN pos = 1 OR pos = n THEN 0.4
        ELSE 0.2 / (n - 2)
      END
    ) AS weight
  FROM touches
  GROUP BY call_id, source, medium, campaign
),

credits AS (
  SELECT
    call_id,
    'first_touch' AS model,
    IF(first_touch.source IS NULL, source, first_touch.source) AS source,
    IF(first_touch.source IS NULL, medium, first_touch.medium) AS medium,
    IF(first_touch.source IS NULL, campaign, first_touch.utm_campaign)
      AS campaign,
    1.0 AS weight
  FROM calls

  UNION ALL

  SELECT call_id, 'last_touch', source, medium, campaign, 1.0
  FROM calls

  UNION ALL

  SELECT
    call_id,
    'last_non_direct',
    IF(IFNULL(direct_return, FALSE), last_non_direct_touch.source, source),
    IF(IFNULL(direct_return, FALSE), last_non_direct_touch.medium, medium),
    IF(
      IFNULL(direct_return, FALSE), last_non_direct_touch.utm_campaign, campaign
    ),
    1.0
  FROM calls

  UNION ALL

  SELECT
    c.call_id,
    'position_based',
    IF(p.call_id IS NULL, c.source, p.source),
    IF(p.call_id IS NULL, c.medium, p.medium),
    IF(p.call_id IS NULL, c.campaign, p.campaign),
    IF(p.call_id IS NULL, 1.0, p.weight)
  FROM calls AS c
  LEFT JOIN positions AS p ON p.call_id = c.call_id AND c.source IS NOT NULL
)

SELECT
  c.call_date,
  c.site_id,
  c.call_id,
  c.started_at,
  k.model,
  IF(c.attributed, IFNULL(k.source, '(not set)'), '(unattributed)') AS source,
  IF(c.attributed, IFNULL(k.medium, '(not set)'), '(unattributed)') AS medium,
  IF(c.attributed, IFNULL(k.campaign, '(not set)'), '(not set)') AS campaign,
  k.weight,
  c.attributed,
  c.target,
  c.answered,
  c.talk_s,
  c.caller_hash,
  c.first_time_caller,
  c.reason,
  c.confidence,
  c.number_kind
FROM credits AS k
INNER JOIN calls AS c ON c.call_id = k.call_id
