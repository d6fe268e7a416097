// A click (or a middle click) for the variants that watch clicks: each
// rule in turn is asked about what was clicked and the link that is or
// holds it, and the first that answers [name, props] sends that event (an
// answer without a name sends nothing). A link's navigation is left alone:
// the beacon outlives the page.
var rules = [];
function clicked(ev) {
  var e = ev.target, a = e, r;
  // A link with a host: not a mailto: link, nor an SVG one.
  while (a && !(a.localName == "a" && a.host)) a = a.parentNode;
  if (ev.type == "click" || ev.button == 1) {
    rules.some((f) => (r = f(e, a)));
    if (r && r[0]) track(r[0], { props: r[1] });
  }
}
d.addEventListener("click", clicked);
d.addEventListener("auxclick", clicked);
