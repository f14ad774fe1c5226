// The jobs console's small behaviours, no framework:
// - a form with data-confirm asks before it posts (bulk retries);
// - an element with data-live-seconds and an id is read again from the server every so
//   many seconds while the tab is visible and replaced in place (the queue dashboard);
// - the job list (#result_list with data-live-seconds) updates the cells of the jobs it
//   shows in place, leaving each row's checkbox alone (a selection survives), and says
//   how many newer jobs there are instead of pushing the rows down under the pointer.
"use strict";

document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
}, true);

function buzzerFetchPage() {
  return fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
    .then(function (response) {
      if (!response.ok) { throw new Error("status " + response.status); }
      return response.text();
    })
    .then(function (text) { return new DOMParser().parseFromString(text, "text/html"); });
}

function buzzerEvery(element, update) {
  var seconds = Number(element.dataset.liveSeconds) || 10;
  var busy = false;
  window.setInterval(function () {
    if (document.hidden || busy) { return; }
    busy = true;
    buzzerFetchPage().then(update).catch(function () { /* the next round tries again */ })
      .finally(function () { busy = false; });
  }, seconds * 1000);
}

function buzzerLiveBlock(element) {
  buzzerEvery(element, function (doc) {
    var fresh = doc.getElementById(element.id);
    if (fresh) { element.innerHTML = fresh.innerHTML; }
  });
}

function buzzerLiveRows(table) {
  var notice = document.createElement("p");
  notice.id = "buzzer-newer-jobs";
  notice.className = "buzzer-meta";
  notice.hidden = true;
  table.parentNode.insertBefore(notice, table);
  buzzerEvery(table, function (doc) {
    var newer = 0;
    doc.querySelectorAll("#result_list tbody tr").forEach(function (freshRow) {
      var box = freshRow.querySelector("input.action-select");
      if (!box) { return; }
      var mine = table.querySelector('tbody input.action-select[value="' + CSS.escape(box.value) + '"]');
      if (!mine) { newer += 1; return; }
      var row = mine.closest("tr");
      Array.prototype.forEach.call(freshRow.cells, function (cell, index) {
        var current = row.cells[index];
        if (current && !current.contains(mine) && current.innerHTML !== cell.innerHTML) {
          current.innerHTML = cell.innerHTML;
        }
      });
    });
    notice.hidden = newer === 0;
    notice.innerHTML = "";
    if (newer) {
      var link = document.createElement("a");
      link.href = window.location.href;
      link.textContent = newer + " newer job" + (newer === 1 ? "" : "s") + " on this page: show";
      notice.appendChild(link);
    }
  });
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-live-seconds][id]").forEach(function (element) {
    if (element.id === "result_list") { buzzerLiveRows(element); } else { buzzerLiveBlock(element); }
  });
});
