'use strict';
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { DynamoDBDocumentClient, QueryCommand } = require('@aws-sdk/lib-dynamodb');

const client = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const TABLE = process.env.TABLE_NAME;
const cache = new Map();
const TTL_MS = 15000;

function response(statusCode, body) {
  return {
    statusCode,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  };
}

async function listOrders(tenantId, limit) {
  const hit = cache.get(`${tenantId}:${limit}`);
  if (hit && Date.now() - hit.at < TTL_MS) return hit.items;
  const out = await client.send(new QueryCommand({
    TableName: TABLE,
    KeyConditionExpression: 'tenant_id = :t',
    ExpressionAttributeValues: { ':t': tenantId },
    Limit: limit,
  }));
  const items = out.Items || [];
  cache.set(`${tenantId}:${limit}`, { at: Date.now(), items });
  return items;
}

exports.handler = async (event, context) => {
  const tenantId = event.requestContext.authorizer.tenantId;
  const limit = Number((event.queryStringParameters || {}).limit || 50);
  const orders = await listOrders(tenantId, limit);
  console.log(JSON.stringify({ msg: 'listed orders', count: orders.length }));
  return response(200, { orders });
};

module.exports.listOrders = listOrders;
