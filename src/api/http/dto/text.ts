import { applyDecorators } from '@nestjs/common';
import { ApiProperty } from '@nestjs/swagger';
import { IsOptional, IsString, Length, Matches } from 'class-validator';

/** Display names: 1 to 200 characters, no control characters. */
export function IsDisplayName(options: { optional?: boolean } = {}): PropertyDecorator {
  return applyDecorators(
    ...(options.optional ? [IsOptional()] : []),
    IsString(),
    Length(1, 200),
    Matches(/^[^\p{Cc}]*$/u, { message: 'must not contain control characters' }),
    ApiProperty({ type: String, minLength: 1, maxLength: 200, required: !options.optional }),
  );
}
