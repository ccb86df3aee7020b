// The official TypeScript SDK client talking to the gateway over Streamable HTTP.
// Usage: node gateway_ts_client.mjs URL TOKEN ALLOWED_TOOL ALLOWED_ARGS_JSON DENIED_TOOL
// Prints one JSON object: the tool names listed, the allowed call's result, the denied call's error.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, allowed, allowedArgs, denied] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "ts-sdk-agent", version: "1.0.0" });
await client.connect(transport);
const out = { server: client.getServerVersion() };
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
out.allowed = await client.callTool({ name: allowed, arguments: JSON.parse(allowedArgs) });
try {
  out.denied = await client.callTool({ name: denied, arguments: {} });
} catch (error) {
  out.deniedError = { code: error.code, message: error.message };
}
await client.close();
console.log(JSON.stringify(out));
