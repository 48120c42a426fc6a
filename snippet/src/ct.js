/*
 * calltrack: the landing-page snippet.
 *
 * Captures the visit (UTM, referrer, click ids, analytics client ids), keeps
 * the first, last and last non-direct touch, asks the `assign` function for a
 * tracking number and swaps the site's default number for it wherever the page
 * shows it: text in any common format (also split across inline elements),
 * `tel:` links and elements marked `data-ct-phone`, now and in content added
 * later. Holds the number with a heartbeat while the page is visible and
 * releases it on `pagehide`.
 *
 * One IIFE, one global (`calltrack`), nothing thrown into the host page: entry
 * points are guarded, requests end in a catch, and any failure leaves the
 * default number in place with a console.debug line. docs/snippet.md is the
 * developer's guide; build.mjs minifies this file into dist/ct.min.js.
 */
((w, d) => {
  const queued = w.calltrack;
  if (queued && queued.loaded) return; // pasted twice: the first copy runs

  const KEY = '_ct'; // cookie, storage key and cross-domain link parameter
  const PHONE = 'data-ct-phone';
  const EXCLUDE = 'data-ct-exclude';
  const SESSION_MS = 18e5; // 30 min without a page view or heartbeat ends a session
  const TIMEOUT_MS = 1500; // an answer later than this leaves the default number
  const LINK_MS = 12e4; // a decorated link is honoured for 2 min, so a shared URL is not
  const CAP = 200; // chars kept of a touch's values, so that three touches fit one cookie
  const URL_CAP = 2048; // the longest page_url and referrer the function accepts
  // URL parameters a touch keeps: UTM values lower-cased, click ids as sent.
  const PARAMS = ('utm_source utm_medium utm_campaign utm_content utm_term ' +
    'gclid gbraid wbraid yclid fbclid').split(' ');
  // What tells one campaign from another; a touch with none of it is direct.
  const CAMPAIGN = PARAMS.concat('referrer');
  const COOKIE = ['v', 's', 't', 'c', 'analytics', 'ads']; // what the cookie holds of the state
  // Elements whose text runs on with their neighbours', so a number split
  // across them (`<b>+7 (495)</b> 123-45-67`) is still one number.
  const INLINE = /^(A|B|I|U|EM|SPAN|STRONG|SMALL|FONT|LABEL)$/;
  const SKIP = /^(SCRIPT|STYLE|TEXTAREA)$/; // JSON-LD keeps the real number for search engines
  // What may stand between the digits of a phone number.
  const SEP = '[\\s().\u2010-\u2015-]*';

  const loc = location;
  const script = d.currentScript;
  const attr = (name) => script.getAttribute('data-' + name);
  const site = attr('site');
  const endpoint = attr('endpoint') || script.src.replace(/\/[^/]*$/, '');
  const domains = (attr('domains') || '').match(/[^\s,]+/g) || [];
  const assumed = attr('consent') == 'granted'; // when the site gives no signal

  let st = {}; // v visitor, s session, t last activity (ms), f/l/n touches, c consent from the API
  let consent; // {analytics, ads} in force
  let apiConsent; // set by calltrack('consent', ...) on this page
  let res; // the latest assign or renew answer
  let current = Promise.resolve(); // the latest assign
  let olds = new Set(); // digits of the numbers to find: the default and any shown before
  let timer, period, released, observer, top, shown;
  let lastUrl;

  const log = (e) => console.debug('calltrack:', e);

  // Wraps a function so that nothing it does throws into the page.
  const safe = (fn) =>
    function () {
      try {
        return fn.apply(this, arguments);
      } catch (e) {
        log(e);
      }
    };

  const on = (target, type, fn, capture) => target.addEventListener(type, safe(fn), capture);

  const cookie = (name) => {
    const m = d.cookie.match('(?:^|; )' + name + '=([^;]*)');
    return m && decodeURIComponent(m[1]);
  };

  // ';domain=' and the widest domain that takes a cookie (example.test on
  // shop.example.test), found by trying, as analytics tags do.
  const topDomain = () => {
    for (let i = -2, parts = loc.hostname.split('.'); top == null; i--) {
      const dom = ';domain=' + parts.slice(i).join('.');
      d.cookie = KEY + 't=1' + dom;
      if (cookie(KEY + 't') || -i > parts.length) {
        top = dom;
        d.cookie = KEY + 't=;max-age=0' + dom;
      }
    }
    return top;
  };

  // Whether `host` is one of `list` or under one of them.
  const within = (host, list) => list.some((x) => ('.' + host).endsWith('.' + x));

  // The touches from this origin's localStorage (else this tab's session
  // copy), the ids from the cookie, which the site's hosts share.
  const load = () => {
    try {
      return { ...JSON.parse(localStorage[KEY] || sessionStorage[KEY] || 0), ...JSON.parse(cookie(KEY)) };
    } catch (e) {
      return {};
    }
  };

  // Session storage always. With analytics consent the ids also go into a
  // cookie on the top domain (small: sent with every request to the site) and
  // everything into localStorage; without it any earlier copy is removed.
  // Note: a touch started on another host of the site is known there and to
  // the server, which keeps each visitor's touches, but not in this origin's storage.
  const save = () => {
    const json = JSON.stringify(st);
    const keep = consent.analytics;
    try {
      sessionStorage[KEY] = json;
      d.cookie = KEY + '=' + (keep ? encodeURIComponent(JSON.stringify(st, COOKIE)) : '') +
        ';path=/;max-age=' + (keep ? 34560000 : 0) + // 400 days, Chrome's cap
        topDomain();
      keep ? (localStorage[KEY] = json) : localStorage.removeItem(KEY);
    } catch (e) {
      log(e);
    }
  };

  const newId = () => crypto.getRandomValues(new Uint32Array(4)).join('-'); // 128 bits

  const cap = (v, n = CAP) => v.slice(0, n);

  const campaign = (t) => JSON.stringify(t, CAMPAIGN);

  const direct = (t) => campaign(t) == '{}';

  const touchNow = (referrer) => {
    const q = new URLSearchParams(loc.search);
    const t = {};
    PARAMS.forEach((k) => {
      const v = q.get(k);
      if (v) t[k] = cap(k[0] == 'u' ? v.toLowerCase() : v);
    });
    // A referrer on the site's own hosts is no new touch.
    const own = [topDomain().slice(8), ...domains];
    if (referrer && !within(new URL(referrer).hostname, own)) {
      t.referrer = cap(referrer);
    }
    t.landing_page = cap(loc.href);
    t.at = new Date().toISOString();
    return t;
  };

  // The API's word, then Google Consent Mode (the dataLayer's consent
  // commands, in order), then what the API said on an earlier page, then the
  // site's data-consent default.
  const readConsent = () => {
    let mode;
    (w.dataLayer || []).forEach((e) => {
      if (e && e[0] == 'consent') mode = { ...mode, ...e[2] };
    });
    return apiConsent ||
      (mode && {
        analytics: mode.analytics_storage == 'granted',
        ads: mode.ad_storage == 'granted',
      }) ||
      st.c || { analytics: assumed, ads: assumed };
  };

  // A link from another of the site's domains carries [visitor, session,
  // touch, ms]; take them and drop the parameter from the address bar.
  const pickup = () => {
    const x = new URLSearchParams(loc.search).get(KEY);
    if (x) {
      history.replaceState(history.state, '',
        loc.href.replace(/([?&])_ct=[^&#]*(&?)/, (m, sep, amp) => amp && sep));
      const [v, s, t, ms] = JSON.parse(x);
      if (Math.abs(Date.now() - ms) < LINK_MS) {
        Object.assign(st, { v, s, t: ms });
        if (t) {
          st.l = t; // a host that has no touches of the session sends none
          st.f = st.f || t;
          if (!direct(t)) st.n = t;
        }
      }
    }
  };

  // Records one page view; true when it starts a new session.
  const capture = (referrer) => {
    st = load();
    consent = readConsent();
    pickup();
    const t = touchNow(referrer);
    const now = Date.now();
    const fresh = !st.s || now - st.t > SESSION_MS ||
      (!direct(t) && campaign(t) != campaign(st.l));
    if (fresh) {
      st.s = newId();
      st.f = st.f || t;
      st.l = t;
      if (!direct(t)) st.n = t;
    }
    st.v = st.v || newId();
    st.t = now;
    save();
    return fresh;
  };

  // The assign request; ad-platform ids go only with the matching consent.
  const body = () => {
    const a = consent.analytics;
    const ga = cookie('_ga');
    const gs = d.cookie.match(/(?:^|; )_ga_\w+=GS\d\.\d+\.s?(\d+)/);
    const n = st.n || {};
    const fbc = cookie('_fbc') || (n.fbclid && 'fb.1.' + Date.parse(n.at) + '.' + n.fbclid);
    return {
      ...ids(),
      page_url: cap(loc.href, URL_CAP),
      referrer: cap(d.referrer, URL_CAP),
      first_touch: st.f,
      last_touch: st.l,
      last_non_direct_touch: st.n, // absent until there is one
      ga_client_id: (a && ga && ga.split('.').slice(-2).join('.')) || null,
      ga_session_id: (a && gs && gs[1]) || null,
      ym_client_id: (a && cookie('_ym_uid')) || null,
      fbp: (consent.ads && cookie('_fbp')) || null,
      fbc: (consent.ads && fbc) || null,
      consent,
    };
  };

  const ids = () => ({ visitor_id: st.v, session_id: st.s });

  const url = (path) => endpoint + path + '?site=' + site;

  // POSTs JSON as text/plain, which needs no CORS preflight, and calls `then`
  // with the answer, or with undefined on a network error, a timeout or a 4xx/5xx.
  // `then` runs either way, and nothing it throws escapes either.
  const post = (path, data, then) =>
    new Promise((ok) =>
      ok(fetch(url(path), {
        method: 'POST',
        body: JSON.stringify(data),
        signal: AbortSignal.timeout(TIMEOUT_MS),
      })))
      .then((r) => {
        if (r.ok) return r.json();
        throw r.status;
      })
      .catch((e) => {
        log(e);
        // A 400 means the stored state is not acceptable (tampered with, or
        // from another version): the next page view starts afresh.
        if (e == 400) {
          st = {};
          save();
        }
      })
      .then(then)
      .catch(log);

  const keep = (r) => {
    if (r) {
      res = r;
      st.v = r.visitor_id;
      st.s = r.session_id;
      st.t = Date.now();
      save();
      show(r);
    }
    return r;
  };

  const assign = () => {
    released = 0;
    return (current = post('', body(), (r) => beat(keep(r) && r.renew_in_s)));
  };

  // The heartbeat runs only while the page is visible.
  const beat = (s) => {
    clearTimeout(timer);
    period = s;
    if (s && !released && !d.hidden) timer = setTimeout(renew, s * 1e3);
  };

  const renew = () => post('/renew', ids(), (r) => beat(keep(r) ? r.renew_in_s : period));

  const release = () => {
    if (res && !released) {
      released = 1;
      clearTimeout(timer);
      navigator.sendBeacon(url('/release'), JSON.stringify(ids()));
    }
  };

  // ---- Finding and swapping the number ----

  const digits = (x) => x.replace(/\D/g, '');

  // The ways a site writes a number, longest first; forms(old)[i] becomes
  // forms(new)[i]: full (+7 495...), with a trunk 8 (8 495...), then for a
  // country code of 1-3 digits the national number with and without a trunk 0.
  const forms = (e164) => {
    const f = [e164, '8' + e164.slice(1)];
    for (let i = 1; i < 4; i++) f.push('0' + e164.slice(i), e164.slice(i));
    return f;
  };

  // A form's digits with any separators between them, between non-digits.
  const pattern = (form) => new RegExp('(^|\\D)' + form.split('').join(SEP) + '(?!\\d)', 'g');

  // Edits ({position: text}) that turn each old number in `s` into the new one
  // digit by digit, so the spaces, brackets and dashes, and the markup between
  // them, stay as the site wrote them. A form matches only between non-digits.
  const edits = (s) => {
    const out = {};
    const to = forms(digits(res.number));
    let hit;
    olds.forEach((old) => forms(old).forEach((form, j) => {
      if (form.length > 8) {
        s.replace(pattern(form), (m, pre, at) => {
          let k = 0;
          m.replace(/\d/g, (c, i) => {
            // The last digit takes any surplus of a longer new number.
            if (!(at + i in out)) {
              out[at + i] = k < form.length - 1 ? to[j][k] || '' : to[j].slice(k);
            }
            k++;
          });
          hit = 1;
        });
      }
    }));
    return hit && out;
  };

  const apply = (s, e, from = 0) => s.replace(/[^]/g, (c, i) => (from + i in e ? e[from + i] : c));

  // One element on the way: elements the site marks get the display form and
  // tel: links the new number. 2 skips the element's subtree, 1 goes on.
  const visit = (el) => {
    if (SKIP.test(el.nodeName) || el.hasAttribute(EXCLUDE)) return 2;
    const h = el.getAttribute('href');
    if (el.hasAttribute(PHONE)) {
      if (el.textContent != res.display) el.textContent = res.display;
      if (h) el.href = 'tel:' + res.number;
      return 2;
    }
    const e = /^tel:/.test(h) && edits(h);
    if (e) el.setAttribute('href', apply(h, e));
    return 1;
  };

  const scan = (root) => {
    if (!res || !root?.closest || root.closest('[' + EXCLUDE + ']') || visit(root) > 1) return;

    // Text: inline elements' text joined, '|' where a block starts or ends.
    const walker = d.createTreeWalker(root, 5, (n) => n.nodeType == 3 || visit(n));
    const texts = [];
    let s = '';
    let block, n, b;
    while ((n = walker.nextNode())) {
      if (n.nodeType == 3) {
        for (b = n.parentNode; INLINE.test(b.nodeName); b = b.parentNode);
        if (b != block) s += '|';
        block = b;
        texts.push([n, s.length]);
        s += n.data;
      } else if (!INLINE.test(n.nodeName)) {
        s += '|';
        block = 0;
      }
    }
    const e = edits(s);
    if (e) {
      texts.forEach(([node, from]) => {
        const t = apply(node.data, e, from);
        if (t != node.data) node.data = t;
      });
    }
  };

  const show = (r) => {
    const now = digits(r.number);
    olds = new Set([...olds, r.default, shown].filter(Boolean).map(digits));
    olds.delete(now);
    shown = r.number;
    scan(d.documentElement);
    if (!observer) {
      // Popups, lazy sections and SPA views: swap in what is added or changed.
      observer = new MutationObserver(safe((ms) => {
        const roots = new Set();
        ms.forEach((m) => {
          if (m.type == 'childList') {
            m.addedNodes.forEach((a) => roots.add(a.nodeType == 1 ? a : m.target));
          } else {
            roots.add(m.target.parentNode);
          }
        });
        roots.forEach(scan);
      }));
      observer.observe(d.documentElement, { childList: true, subtree: true, characterData: true });
    }
  };

  // ---- Views, consent changes, cross-domain links ----

  // One page view: a first load, an SPA route, a restore from the bfcache.
  const view = (referrer) => {
    lastUrl = loc.href;
    if (capture(referrer) || !res || released) assign();
  };

  const route = safe(() => loc.href != lastUrl && view(lastUrl));

  // A changed consent is stored (or wiped) and sent with a fresh assign.
  const recheck = () => {
    const c = readConsent();
    if (JSON.stringify(c) != JSON.stringify(consent)) {
      consent = c;
      save();
      assign();
    }
  };

  const decorate = (ev) => {
    const a = ev.target.closest('a[href]');
    if (a && a.hostname != loc.hostname && within(a.hostname, domains)) {
      const u = new URL(a.href);
      u.searchParams.set(KEY, JSON.stringify([st.v, st.s, st.l, Date.now()]));
      a.href = u;
    }
    setTimeout(recheck); // a consent banner's button may have updated Consent Mode
  };

  // The one global: calltrack('number' | 'ids' | 'consent', arg) -> Promise.
  const setConsent = safe((arg) => {
    st.c = apiConsent = { analytics: !!arg.analytics, ads: !!arg.ads };
    recheck();
  });

  const api = (cmd, arg) => {
    if (cmd == 'consent') setConsent(arg);
    return current.then(() => (cmd == 'ids' ? body() : cmd == 'consent' ? consent : res));
  };
  api.loaded = 1;
  w.calltrack = api;

  try {
    view(d.referrer);
    // Calls made before the snippet loaded, by the paste-in stub.
    ((queued && queued.q) || []).forEach(([args, resolve]) => resolve(api(...args)));

    const push = history.pushState;
    history.pushState = function () {
      const r = push.apply(this, arguments);
      route();
      return r;
    };
    on(w, 'popstate', route);
    on(w, 'pagehide', release);
    on(w, 'pageshow', (e) => e.persisted && view(d.referrer)); // a bfcache restore is a new view
    on(d, 'visibilitychange', () => (d.hidden ? clearTimeout(timer) : period && renew()));
    on(d, 'mousedown', decorate, true);
    on(d, 'click', decorate, true);
  } catch (e) {
    log(e);
  }
})(window, document);
