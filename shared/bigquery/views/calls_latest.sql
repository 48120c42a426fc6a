-- Every call once, in its latest version (calls is append-only: a later
-- recording adds a version), with the site's target-call rule applied.
-- target: answered, talked at least the site's min_talk_s (target_rules,
-- default 30 s) and not spam; a review verdict (call_reviews) overrides the
-- rule. attributed: the call carries a touch (not default_number,
-- unknown_number or no_hold without an earlier attributed call).
WITH latest AS (
  SELECT *
  FROM `{dataset}.calls`
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY call_id ORDER BY version DESC, recorded_at DESC
  ) = 1
),

rules AS (
  SELECT site_id, min_talk_s
  FROM `{dataset}.target_rules`
  QUALIFY ROW_NUMBER() OVER (PARTITION BY site_id ORDER BY set_at DESC) = 1
),

reviews AS (
  SELECT site_id, call_id, verdict
  FROM `{dataset}.call_reviews`
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY site_id, call_id ORDER BY reviewed_at DESC, review_id DESC
  ) = 1
)

SELECT
  c.*,
  DATE(c.started_at) AS call_date,
  c.source IS NOT NULL AS attributed,
  IFNULL(r.min_talk_s, 30) AS min_talk_s,
  v.verdict AS review_verdict,
  IFNULL(v.verdict = 'spam', FALSE) AS spam,
  CASE
    WHEN v.verdict = 'target' THEN TRUE
    WHEN v.verdict IN ('not_target', 'spam') THEN FALSE
    ELSE IFNULL(c.answered, FALSE)
      AND IFNULL(c.talk_s, 0) >= IFNULL(r.min_talk_s, 30)
  END AS target
FROM latest AS c
LEFT JOIN rules AS r ON r.site_id = c.site_id
LEFT JOIN reviews AS v ON v.site_id = c.site_id AND v.call_id = c.call_id
