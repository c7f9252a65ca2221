// The API reference at /docs: Swagger UI, vendored (no CDN: classrooms are offline), started from
// this file rather than an inline script (the pages' Content-Security-Policy allows only 'self').
/* global SwaggerUIBundle */
(function () {
  "use strict";
  var el = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: el.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
