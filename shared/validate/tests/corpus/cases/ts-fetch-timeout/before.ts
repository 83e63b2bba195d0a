import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2 } from 'aws-lambda';
import { S3Client, GetObjectCommand } from '@aws-sdk/client-s3';

const s3 = new S3Client({});
const BUCKET = process.env.CONFIG_BUCKET ?? 'configs';
const PARTNER_URL = 'https://api.partner.example.com/v2/quotes';

interface Quote {
  sku: string;
  price: number;
}

async function loadConfig(tenantId: string): Promise<Record<string, unknown>> {
  const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${tenantId}/config.json` }));
  const text = await out.Body!.transformToString();
  return JSON.parse(text);
}

export async function fetchQuotes(skus: string[]): Promise<Quote[]> {
  const res = await fetch(PARTNER_URL, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ skus }),
  });
  if (!res.ok) {
    throw new Error(`partner answered ${res.status}`);
  }
  return (await res.json()) as Quote[];
}

export const handler = async (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyResultV2> => {
  const tenantId = event.requestContext.authorizer?.lambda?.tenantId as string;
  const config = await loadConfig(tenantId);
  const skus = (event.queryStringParameters?.skus ?? '').split(',').filter(Boolean);
  const quotes = await fetchQuotes(skus);
  return { statusCode: 200, body: JSON.stringify({ quotes, currency: config.currency }) };
};
