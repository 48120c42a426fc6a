"""Finding and swapping the default number: formats, tel: links, marked and
excluded elements, content added later, SPA routes, the API and its queue."""

from __future__ import annotations

import pytest

from tests.browser.harness import DISPLAY, NUMBER, SHOP

pytestmark = pytest.mark.browser

# (original text, what it becomes): the default +7 495 123-00-00 in each way
# sites write it, swapped for +7 495 765-43-21 in the same style.
FORMATS = [
    ("+7 (495) 123-00-00", "+7 (495) 765-43-21"),
    ("8 495 123-00-00", "8 495 765-43-21"),
    ("8 (495) 123-00-00", "8 (495) 765-43-21"),
    ("84951230000", "84957654321"),
    ("+74951230000", "+74957654321"),
    ("74951230000", "74957654321"),
    ("+7 495 123 00 00", "+7 495 765 43 21"),
    ("8.495.123.00.00", "8.495.765.43.21"),
    ("8-495-123-00-00", "8-495-765-43-21"),
    ("(495) 123-00-00", "(495) 765-43-21"),
    ("495 1230000", "495 7654321"),
    ("+7\u00a0495\u00a0123\u201100\u201100", "+7\u00a0495\u00a0765\u201143\u201121"),
    ("Звоните: 8 495 123-00-00, с 9 до 18", "Звоните: 8 495 765-43-21, с 9 до 18"),
    ("8 495 123-00-00 8 800 555-35-35", "8 495 765-43-21 8 800 555-35-35"),
]

UNTOUCHED = [
    "+7 (495) 999-88-77",  # another number
    "ИНН 7701234567, ОГРН 1234951230000",  # digits around the default's digits
    "194951230000",  # the default's digits inside a longer number
]

TEL_LINKS = [
    ("tel:+74951230000", "tel:+74957654321"),
    ("tel:84951230000", "tel:84957654321"),
    ("tel:+7-495-123-00-00", "tel:+7-495-765-43-21"),
    ("tel:8(495)123-00-00", "tel:8(495)765-43-21"),
]


def formats_page() -> str:
    rows = "".join(f'<p id="f{i}">{text}</p>' for i, (text, _) in enumerate(FORMATS))
    rows += "".join(f'<p id="u{i}">{text}</p>' for i, text in enumerate(UNTOUCHED))
    rows += "".join(
        f'<a id="t{i}" href="{href}">call</a>' for i, (href, _) in enumerate(TEL_LINKS)
    )
    return (
        rows
        + """
      <p id="split"><span class="cc">+7 (495)</span> <b>123</b>-<i>00-00</i></p>
      <p id="lines">8 (495) 123-00-00<br>8 (495) 123-00-01</p>
      <div id="blocks"><div>8 495 123-00-00</div>84951230001</div>
      <span id="marked" data-ct-phone>Позвонить нам</span>
      <a id="marked-link" data-ct-phone href="tel:+70000000000">call</a>
      <div id="excluded" data-ct-exclude><p>+7 (495) 123-00-00</p>
        <a href="tel:+74951230000">+7 (495) 123-00-00</a></div>
      <a id="linked" href="tel:+74951230000"><span>+7 (495)</span> 123-00-00</a>
      <script type="application/ld+json">{"telephone": "+74951230000"}</script>
      <textarea id="typed">+7 (495) 123-00-00</textarea>
    """
    )


def test_every_common_format_is_swapped_keeping_its_style(site, open_tab):
    path = site.serve("/swap/formats", formats_page())
    tab = open_tab(site.pages.url(SHOP, path))

    tab.wait_text("#f0", FORMATS[0][1])
    for i, (_, expected) in enumerate(FORMATS):
        assert tab.text(f"#f{i}") == expected
    for i, text in enumerate(UNTOUCHED):
        assert tab.text(f"#u{i}") == text
    for i, (_, expected) in enumerate(TEL_LINKS):
        assert tab.page.get_attribute(f"#t{i}", "href") == expected
    assert tab.page.inner_html("#split") == (
        '<span class="cc">+7 (495)</span> <b>765</b>-<i>43-21</i>'
    )
    assert tab.page.inner_html("#lines") == "8 (495) 765-43-21<br>8 (495) 123-00-01"
    assert tab.page.inner_html("#blocks") == "<div>8 495 765-43-21</div>84951230001"
    assert tab.problems() == []


def test_marked_elements_get_the_display_form_and_excluded_ones_stay(site, open_tab):
    path = site.serve("/swap/marked", formats_page())
    tab = open_tab(site.pages.url(SHOP, path))

    tab.wait_text("#marked", DISPLAY)
    assert tab.text("#marked-link") == DISPLAY
    assert tab.page.get_attribute("#marked-link", "href") == "tel:" + NUMBER
    assert tab.page.inner_html("#excluded") == (
        "<p>+7 (495) 123-00-00</p>\n"
        '        <a href="tel:+74951230000">+7 (495) 123-00-00</a>'
    )
    assert tab.page.get_attribute("#linked", "href") == "tel:+74957654321"
    assert tab.text("#linked") == "+7 (495) 765-43-21"
    assert '"+74951230000"' in tab.page.inner_html("script[type='application/ld+json']")
    assert tab.page.input_value("#typed") == "+7 (495) 123-00-00"


POPUP_PAGE = """
  <p id="main">+7 (495) 123-00-00</p>
  <p id="lazy">Загрузка…</p>
  <script>
    function openPopup() {
      var box = document.createElement('div');
      box.className = 'modal';
      box.innerHTML = '<h2>Перезвоним</h2><p id="popup">Или звоните: '
        + '<a id="popup-link" href="tel:84951230000">8 (495) 123-00-00</a></p>';
      document.body.appendChild(box);
    }
    function fillLazy() {
      document.getElementById('lazy').firstChild.data = 'Офис: 8 495 123 00 00';
    }
  </script>
"""


def test_a_popup_and_a_lazy_text_added_after_load_are_swapped(site, open_tab):
    path = site.serve("/swap/popup", POPUP_PAGE)
    tab = open_tab(site.pages.url(SHOP, path))
    tab.wait_text("#main", "+7 (495) 765-43-21")

    tab.page.evaluate("openPopup(); fillLazy()")

    tab.wait_text("#popup-link", "8 (495) 765-43-21")
    assert tab.page.get_attribute("#popup-link", "href") == "tel:84957654321"
    tab.wait_text("#lazy", "Офис: 8 495 765 43 21")
    assert tab.problems() == []


SPA_PAGE = """
  <nav><a id="to-contacts" href="/spa/contacts">Контакты</a></nav>
  <main id="app"><p>Главная</p></main>
  <script>
    var views = {
      '/spa/home': '<p>Главная</p>',
      '/spa/contacts': '<p id="contacts">Телефон: <b>+7 495 123-00-00</b></p>',
      '/spa/promo': '<p id="promo">Акция: 8 495 123 00 00</p>'
    };
    function render() {
      // Frameworks render a moment after the route changes.
      setTimeout(function () {
        document.getElementById('app').innerHTML = views[location.pathname] || '';
      }, 50);
    }
    function go(path) {
      var result = history.pushState.call(history, {view: path}, '', path);
      window.pushResult = result;
      render();
    }
    window.addEventListener('popstate', render);
    document.getElementById('to-contacts').addEventListener('click', function (e) {
      e.preventDefault();
      go('/spa/contacts');
    });
  </script>
"""


def test_spa_routes_and_back_navigation_are_swapped(site, open_tab):
    path = site.serve("/spa/home", SPA_PAGE)
    tab = open_tab(site.pages.url(SHOP, path))
    tab.number()

    tab.page.click("#to-contacts")
    tab.wait_text("#contacts", "Телефон: +7 495 765-43-21")
    assert tab.page.evaluate("history.state") == {"view": "/spa/contacts"}
    assert tab.page.evaluate("window.pushResult") is None

    tab.page.evaluate("go('/spa/promo?utm_source=Newsletter&utm_medium=Email')")
    tab.wait_text("#promo", "Акция: 8 495 765 43 21")
    tab.page.go_back()
    tab.wait_text("#contacts", "Телефон: +7 495 765-43-21")

    # The route with a campaign is a new touch (a new session); the others are not.
    assigns = tab.assigns()
    assert len(assigns) == 2
    assert assigns[1]["last_touch"]["utm_source"] == "newsletter"
    assert assigns[1]["last_touch"]["utm_medium"] == "email"
    assert assigns[1]["session_id"] != assigns[0]["session_id"]
    assert tab.problems() == []


API_PAGE = """
  <p id="main">8 (495) 123-00-00</p>
  <script>
    // Called before the snippet loaded: the paste-in stub queues it.
    window.early = calltrack('number');
    window.earlyIds = calltrack('ids');
  </script>
"""


def test_api_answers_calls_queued_before_load_and_after(site, open_tab):
    path = site.serve("/swap/api", API_PAGE)
    tab = open_tab(site.pages.url(SHOP, path))

    early = tab.page.evaluate("window.early")
    assert early["number"] == NUMBER
    assert early["display"] == DISPLAY
    assert early["kind"] == "dynamic"
    assert early["default"] == "+74951230000"
    ids = tab.page.evaluate("window.earlyIds")
    assert ids["visitor_id"] == early["visitor_id"]
    assert ids["session_id"] == early["session_id"]
    assert tab.page.evaluate("calltrack('ids')")["session_id"] == early["session_id"]
    assert tab.page.evaluate("typeof calltrack") == "function"
    assert tab.problems() == []


def test_a_second_copy_of_the_tag_does_nothing(site, open_tab):
    body = "<p id='main'>8 (495) 123-00-00</p>" + site.tag()
    path = site.serve("/swap/twice", body)
    tab = open_tab(site.pages.url(SHOP, path))

    tab.wait_text("#main", "8 (495) 765-43-21")
    tab.page.wait_for_timeout(300)
    assert len(tab.assigns()) == 1
    assert tab.problems() == []
