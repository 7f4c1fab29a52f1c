/* Parcel trace: while a traced parcel is still in flight, reload the trace every 2 s so its
   new lifecycle events appear. */
"use strict";

(() => {
  const results = document.getElementById("trace-results");
  if (results && Number(results.dataset.open) > 0) {
    setTimeout(() => location.reload(), 2000);
  }
  HMI.on("overview", () => {});
})();
