/* actionhooks site script: a page_view on load, actionhooks.track(name, props), actionhooks.identify(traits).
   No dependencies; beacons are JSON in a text/plain body (no CORS preflight); the visitor cookie is the engine's. */
(function (w, d) {
  "use strict";
  var me = d.currentScript;
  var queued = (w.actionhooks && w.actionhooks.q) || [];
  if (!me || !me.src || (w.actionhooks && w.actionhooks.loaded)) return;
  var collect = me.src.replace(/\/s\.js(?:[?#].*)?$/, "/collect");
  var UTM = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"];

  function send(beacon) {
    beacon.url = w.location.href;
    beacon.title = d.title;
    beacon.referrer = d.referrer || null;
    var body = JSON.stringify(beacon);
    try {
      if (w.navigator.sendBeacon && w.navigator.sendBeacon(collect, body)) return;
    } catch (e) { /* fall through to fetch */ }
    if (w.fetch) {
      w.fetch(collect, { method: "POST", body: body, credentials: "include", keepalive: true,
                         headers: { "Content-Type": "text/plain" } })["catch"](function () {});
    }
  }

  function utm() {
    var out = {}, params;
    try { params = new URLSearchParams(w.location.search); } catch (e) { return out; }
    for (var i = 0; i < UTM.length; i++) {
      var value = params.get(UTM[i]);
      if (value) out[UTM[i]] = value;
    }
    return out;
  }

  var api = {
    loaded: true,
    track: function (name, props) { send({ type: "site_event", name: String(name), props: props || {} }); },
    identify: function (traits) { send({ type: "identify", traits: traits || {} }); },
    page: function () { send({ type: "page_view", utm: utm() }); }
  };
  w.actionhooks = api;
  api.page();
  for (var i = 0; i < queued.length; i++) {
    var call = queued[i];
    if (api[call[0]]) api[call[0]].apply(api, call[1]);
  }
})(window, document);
