// script.outbound-links.js: a click on a link to another host (its port
// included, as Plausible compares them) is "Outbound Link: Click" with prop
// url, the link; the collector keeps its host and path.
rules.push((e, a) => a && a.host != l.host && ["Outbound Link: Click", { url: a.href }]);
