// The official openai npm package against a running Tollgate: chat stream loops and the stream helper.
// Run by scripts/compat/run_node.py (it starts the simulator and a gateway); exits non-zero on a failure.
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.TOLLGATE_BASE_URL, apiKey: process.env.TOLLGATE_KEY, maxRetries: 0 });
const messages = [{ role: "user", content: "Say something nice about gateways" }];

// 1. The loop every tutorial writes: no chunk without choices when include_usage was not asked for.
let text = "";
let last;
for await (const chunk of await client.chat.completions.create({ model: "sim-small", messages, stream: true })) {
  text += chunk.choices[0].delta.content ?? "";
  last = chunk;
}
assert.equal(text.trim().split(" ").length, 20);
assert.equal(last.choices[0].finish_reason, "stop");
assert.equal(last.usage.completion_tokens, 20);

// 2. include_usage: true is OpenAI's documented shape (a last chunk with empty choices).
const chunks = [];
for await (const c of await client.chat.completions.create({
  model: "sim-small", messages, stream: true, stream_options: { include_usage: true },
})) chunks.push(c);
assert.deepEqual(chunks.at(-1).choices, []);
assert.equal(chunks.at(-1).usage.completion_tokens, 20);

// 3. include_usage: false: no usage anywhere.
for await (const c of await client.chat.completions.create({
  model: "sim-small", messages, stream: true, stream_options: { include_usage: false },
})) { assert.ok(c.choices.length > 0); assert.ok(!c.usage); }

// 4. The stream helper's final completion.
const runner = client.chat.completions.stream({ model: "sim-small", messages });
const final = await runner.finalChatCompletion();
assert.equal(final.choices[0].finish_reason, "stop");
assert.equal(final.choices[0].message.content.trim().split(" ").length, 20);

// 5. Legacy completions, JSON and stream.
const done = await client.completions.create({ model: "sim-small", prompt: "Once upon a time", max_tokens: 5 });
assert.equal(done.choices[0].text, "lorem ipsum dolor sit amet ");
let streamed = "";
for await (const c of await client.completions.create({ model: "sim-small", prompt: "Once", max_tokens: 5, stream: true }))
  streamed += c.choices[0].text;
assert.equal(streamed, "lorem ipsum dolor sit amet ");
console.log("openai-node: 5 checks passed");
