// The memory flow through the official Node SDK (@alicloud/bailian20231229), unmodified.
// Env: ENDPOINT, WORKSPACE, and ACCESS_KEY_ID + ACCESS_KEY_SECRET, or BEARER_TOKEN.
// Prints one JSON line: what the server answered, or the SDK's error.
const Client = require('@alicloud/bailian20231229').default;
const $Bailian = require('@alicloud/bailian20231229');
const { $OpenApiUtil } = require('@alicloud/openapi-core');

async function main() {
  const env = process.env;
  const credentials = env.BEARER_TOKEN
    ? { bearerToken: env.BEARER_TOKEN }
    : { accessKeyId: env.ACCESS_KEY_ID, accessKeySecret: env.ACCESS_KEY_SECRET };
  const client = new Client(new $OpenApiUtil.Config({ ...credentials, endpoint: env.ENDPOINT, protocol: 'http' }));
  const ws = env.WORKSPACE;
  const made = await client.createMemory(ws, new $Bailian.CreateMemoryRequest({ description: 'node 客户' }));
  const memoryId = made.body.memoryId;
  await client.createMemoryNode(ws, memoryId, new $Bailian.CreateMemoryNodeRequest({ content: '用户饮食偏好：清淡' }));
  const nodes = await client.listMemoryNodes(ws, memoryId, new $Bailian.ListMemoryNodesRequest({ maxResults: 5 }));
  const got = await client.getMemory(ws, memoryId, new $Bailian.GetMemoryRequest({}));
  let refused = null;
  try {
    await client.getMemory(ws, 'no-such-memory', new $Bailian.GetMemoryRequest({}));
  } catch (error) {
    refused = { statusCode: error.statusCode, code: error.code, requestId: error.requestId };
  }
  console.log(JSON.stringify({
    memoryId,
    description: got.body.description,
    nodes: nodes.body.memoryNodes.map((n) => n.content),
    totalCount: nodes.body.totalCount,
    refused,
  }));
}

main().catch((error) => {
  console.log(JSON.stringify({ error: String(error), code: error.code, statusCode: error.statusCode }));
  process.exit(1);
});
