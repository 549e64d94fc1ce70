// Drain a persistent MQTT session's backlog with mqtt.js (Node-RED's MQTT client), doing no work
// with the messages: the ceiling of any Node-RED flow's `mqtt in` on this machine.  Used by
// benchmarks/mqtt_receive.py, which creates the session and fills its queue first.
//
//   node drain.js INSTALL_DIR MQTT_URL CLIENT_ID COUNT PROTOCOL_VERSION
//
// Prints one line of JSON: {"count", "elapsed_s" (first to last message), "cpu_s" (from before
// connecting to the last message), "rss_bytes"}.  Exits 1 if COUNT messages do not arrive in 600 s.
"use strict";

const path = require("path");

const [installDir, url, clientId, countText, versionText] = process.argv.slice(2);
const mqtt = require(path.join(installDir, "node_modules", "mqtt"));
const expected = Number(countText);
const protocolVersion = Number(versionText);

const cpu0 = process.cpuUsage();
let count = 0;
let first = 0;
let done = false;
const client = mqtt.connect(url, {
  clientId,
  clean: false, // the session made by the benchmark, with its queue
  protocolVersion,
  properties: protocolVersion === 5 ? { sessionExpiryInterval: 604800 } : undefined,
  reconnectPeriod: 0,
});
client.on("message", () => {
  count += 1;
  if (count === 1) first = performance.now();
  if (count === expected) {
    const elapsed = (performance.now() - first) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const result = {
      count,
      elapsed_s: elapsed,
      cpu_s: (cpu.user + cpu.system) / 1e6,
      rss_bytes: process.memoryUsage().rss,
    };
    console.log(JSON.stringify(result));
    // Send the last PUBACK and DISCONNECT, then leave (a reset by the broker after that is no error).
    done = true;
    client.end(false, () => process.exit(0));
  }
});
client.on("error", (err) => {
  if (done) process.exit(0);
  console.error(`mqtt.js: ${err.message}`);
  process.exit(1);
});
setTimeout(() => {
  console.error(`mqtt.js: only ${count} of ${expected} messages in 600 s`);
  process.exit(1);
}, 600000);
