import { ApiProperty } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsIn, IsInt, IsOptional, Matches, Max, Min } from 'class-validator';
import { IsIsoDateTime } from '../validators';

/** Query values are strings: whole numbers are converted only when they are digits alone. */
const toWholeNumber = ({ value }: { value: unknown }) =>
  typeof value === 'string' && /^\d{1,15}$/.test(value) ? Number(value) : value;

export class ReadQueryDto {
  @IsOptional()
  @Matches(/^\d{1,20}$/, { message: 'must be a position: a whole number' })
  @ApiProperty({ required: false, description: 'wait until the ledger has reached it' })
  minPosition?: string;
}

export class BalanceQueryDto extends ReadQueryDto {
  @IsIsoDateTime({ optional: true, description: 'the balance as it was then' })
  at?: string;
}

export const MAX_HISTORY_PAGE = 1000;

export class HistoryQueryDto extends ReadQueryDto {
  @IsOptional()
  @Transform(toWholeNumber)
  @IsInt()
  @Min(0)
  @ApiProperty({ required: false, type: 'integer', minimum: 0, default: 0 })
  fromRevision?: number;

  @IsOptional()
  @Transform(toWholeNumber)
  @IsInt()
  @Min(1)
  @Max(MAX_HISTORY_PAGE)
  @ApiProperty({
    required: false,
    type: 'integer',
    minimum: 1,
    maximum: MAX_HISTORY_PAGE,
    default: 100,
  })
  limit?: number;

  @IsIsoDateTime({
    optional: true,
    description: 'only events up to then, and the state as of then',
  })
  at?: string;
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;

export class UsageQueryDto extends ReadQueryDto {
  @IsOptional()
  @Matches(DATE, { message: 'must be a date, YYYY-MM-DD' })
  @ApiProperty({
    required: false,
    description: 'first day (UTC), inclusive; default: the 1st of this month',
  })
  from?: string;

  @IsOptional()
  @Matches(DATE, { message: 'must be a date, YYYY-MM-DD' })
  @ApiProperty({ required: false, description: 'last day (UTC), inclusive; default: today' })
  to?: string;

  @IsOptional()
  @IsIn(['day', 'charm', 'user'])
  @ApiProperty({ required: false, enum: ['day', 'charm', 'user'], default: 'day' })
  groupBy?: 'day' | 'charm' | 'user';
}
