// The typed event of the send() scenarios (`npm run bench`, `bench/serialize.ts`).

/** A realistic event for the send() scenarios: an order of about 200 bytes of JSON, and its schema. */
export const ORDER = {
  id: 'ord_8f14e45f',
  customer: 'cus_5a105e8b',
  status: 'paid',
  total: 129.95,
  currency: 'EUR',
  items: [{ sku: 'SKU-1042', quantity: 2, price: 39.99 }, { sku: 'SKU-2210', quantity: 1, price: 49.97 }]
}
export const ORDER_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    customer: { type: 'string' },
    status: { type: 'string' },
    total: { type: 'number' },
    currency: { type: 'string' },
    items: {
      type: 'array',
      items: { type: 'object', properties: { sku: { type: 'string' }, quantity: { type: 'integer' }, price: { type: 'number' } }, required: ['sku', 'quantity', 'price'] }
    }
  },
  required: ['id', 'customer', 'status', 'total', 'currency', 'items']
} as const
