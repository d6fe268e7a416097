// script.hash.js: a page is its path and its #fragment, and hashchange is a
// navigation, as the core's data-hash makes it.
hash = 1;
