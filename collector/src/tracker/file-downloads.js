// script.file-downloads.js: a click on a link whose address (without its
// query) ends in one of these extensions is "File Download" with prop url,
// that address. The tag's file-types="js,py" replaces the list, and
// add-file-types="js,py" adds to it.
var types = ((s.getAttribute("file-types") || "pdf,xlsx,docx,txt,rtf,csv,exe,key,pps,ppt,pptx,7z,pkg,rar,gz,zip,avi,mov,mp4,mpeg,wmv,midi,mp3,wav,wma,dmg") + "," + (s.getAttribute("add-file-types") || "")).split(",");
rules.push((e, a) => {
  var u = a && a.href.split("?")[0], x = u && u.split(".").pop();
  return x && types.indexOf(x) >= 0 && ["File Download", { url: u }];
});
