// script.tagged-events.js: an element whose classes name an event,
// class="plausible-event-name=Signup plausible-event-plan=pro" ("+" for a
// space, "--" for "="), sends it when clicked, or when submitted if it is a
// form; its other plausible-event-* classes are props, and a link's URL is
// prop url. As Plausible's tracker does, the search goes up to three
// parents of what was clicked; a click inside a form is left to the form's
// submission, and a tagged link sends no outbound click or download.
function tagged(e) {
  var p = {}, n;
  // "undefined" for what has no classes (the document): it names nothing.
  String(e.classList).replace(/plausible-event-(\S+)(=|--)(\S+)/g, (_, k, x, v) => {
    v = v.replace(/\+/g, " ");
    k.toLowerCase() == "name" ? (n = v) : (p[k] = v);
  });
  return n && [n, p];
}
rules.push((e, a) => {
  for (var i = 0, t; e && i < 4; i++, e = e.parentNode) {
    if (e.localName == "form") return t && [];
    t = tagged(e) || t;
  }
  if (t && a) t[1].url = a.href;
  return t;
});
d.addEventListener("submit", (ev) => {
  var t = tagged(ev.target) || tagged(ev.target.parentNode);
  if (t) track(t[0], { props: t[1] });
});
