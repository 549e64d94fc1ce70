// Node-RED function node "batch": collects points and sends them on in arrays of "batchSize"
// (the consumer's store.batch_size); with less than a batch waiting it sends what there is
// "flushMs" after the batch's first point (the consumer's store.flush_interval_ms).
// A function node rather than split + join: those would make one Node-RED message per point,
// which is slower, and the peer should be the fastest reasonable flow, not a straw man.
const buffer = context.get("buffer");
const size = context.get("batchSize");
for (const point of msg.payload) {
    buffer.push(point);
    if (buffer.length >= size) {
        node.send({ payload: buffer.splice(0, buffer.length) });
    }
}
const timer = context.get("timer");
if (buffer.length === 0 && timer !== undefined) {
    clearTimeout(timer);
    context.set("timer", undefined);
} else if (buffer.length > 0 && timer === undefined) {
    context.set("timer", setTimeout(function () {
        context.set("timer", undefined);
        if (buffer.length > 0) {
            node.send({ payload: buffer.splice(0, buffer.length) });
        }
    }, context.get("flushMs")));
}
return null;
