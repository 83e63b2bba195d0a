'use strict';
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { DynamoDBDocumentClient, QueryCommand } = require('@aws-sdk/lib-dynamodb');

const client = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const TABLE = process.env.TABLE_NAME;

function response(statusCode, body) {
  return {
    statusCode,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  };
}

async function listOrders(tenantId, limit) {
  const out = await client.send(new QueryCommand({
    TableName: TABLE,
    KeyConditionExpression: 'tenant_id = :t',
    ExpressionAttributeValues: { ':t': tenantId },
    Limit: limit,
  }));
  return out.Items || [];
}

exports.handler = async (event, context) => {
  const tenantId = event.requestContext.authorizer.tenantId;
  const limit = Number((event.queryStringParameters || {}).limit || 50);
  const orders = await listOrders(tenantId, limit);
  console.log(JSON.stringify({ msg: 'listed orders', count: orders.length }));
  return response(200, { orders });
};

module.exports.listOrders = listOrders;
